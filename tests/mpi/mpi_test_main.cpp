// GoogleTest main for the tests launched by mpirun (tests/mpi/CMakeLists.txt): every rank runs
// every test; only rank 0 prints. A failure on any rank makes that rank, and so mpirun, exit
// non-zero. Tests call the same collectives in the same order whatever their checks find, so a
// failed expectation never leaves a rank waiting.
#include <gtest/gtest.h>

#include "mpi_test_util.h"

namespace ecmoe::mpi_test {
namespace {
const dist::Comm* g_comm = nullptr;
}
const dist::Comm& comm() { return *g_comm; }
}  // namespace ecmoe::mpi_test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ecmoe::dist::MpiSession session(&argc, &argv);
  ecmoe::mpi_test::g_comm = &session.comm();
  if (!session.comm().is_root()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}

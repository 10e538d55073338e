// dist::Comm in one process (what every build runs without mpirun, and the only communicator of a
// build without MPI, -DECMOE_MPI=OFF): every collective is a copy of this rank's data. And a build
// without MPI refuses a launch by mpirun with one line instead of running each rank alone.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/comm.h"

using namespace ecmoe;

TEST(Comm, OneProcessCollectivesAreCopies) {
  const dist::Comm comm = dist::Comm::single();
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_TRUE(comm.is_root());
  EXPECT_FALSE(comm.parallel());

  std::vector<float> f = {1.5f, -2.f};
  std::vector<double> d = {3.25};
  std::vector<int64_t> i = {7, 8, 9};
  comm.allreduce_sum(std::span<float>(f));
  comm.allreduce_sum(std::span<double>(d));
  comm.allreduce_sum(std::span<int64_t>(i));
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.f}));
  EXPECT_EQ(d, (std::vector<double>{3.25}));
  EXPECT_EQ(i, (std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(comm.allreduce_max(-4.5), -4.5);
  EXPECT_EQ(comm.allgather(uint64_t(42)), (std::vector<uint64_t>{42}));
  EXPECT_EQ(comm.allgatherv(std::span<const float>(f)), f);
  const std::vector<int32_t> ints = {4, 5};
  EXPECT_EQ(comm.allgatherv(std::span<const int32_t>(ints)), ints);

  std::vector<float> taken;
  comm.gather_to_root(std::span<const float>(f), [&](std::span<const float> piece) {
    taken.insert(taken.end(), piece.begin(), piece.end());
  });
  EXPECT_EQ(taken, f);

  std::string text = "unchanged";
  comm.broadcast(text);
  EXPECT_EQ(text, "unchanged");
  EXPECT_TRUE(comm.root_decides(true));
  EXPECT_FALSE(comm.root_decides(false));
  comm.barrier();
  comm.check_same(123, "a value");

  const std::vector<int> counts = {3, 1};
  EXPECT_EQ(comm.alltoall(std::span<const int>(counts), 2), counts);
  const std::vector<float> rows = {1, 2, 3, 4};
  std::vector<float> received(4);
  const int n_rows = 2;
  comm.alltoallv(rows.data(), std::span<const int>(&n_rows, 1), received.data(),
                 std::span<const int>(&n_rows, 1), 2);
  EXPECT_EQ(received, rows);
  EXPECT_EQ(comm.counters().calls, 1);
  EXPECT_EQ(comm.counters().bytes_sent, 0);  // rows kept on this rank are not sent
}

TEST(Comm, WithoutMpirunTheSessionIsOneProcess) {
  ASSERT_FALSE(dist::launched_by_mpirun()) << "run this test without mpirun";
  int argc = 1;
  char name[] = "test_comm";
  char* args[] = {name, nullptr};
  char** argv = args;
  const dist::MpiSession session(&argc, &argv);
  EXPECT_EQ(session.comm().size(), 1);
  EXPECT_FALSE(session.comm().parallel());
}

TEST(Comm, ABuildWithoutMpiRefusesMpirun) {
  if (dist::built_with_mpi()) GTEST_SKIP() << "built with MPI: tests/mpi runs it under mpirun";
  EXPECT_EQ(dist::Comm::world().size(), 1);
  ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  int argc = 1;
  char name[] = "test_comm";
  char* args[] = {name, nullptr};
  char** argv = args;
  try {
    const dist::MpiSession session(&argc, &argv);
    ADD_FAILURE() << "a launch by mpirun was accepted without MPI";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without MPI (-DECMOE_MPI=OFF)"), std::string::npos)
        << e.what();
  }
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
}

#include <string>

#include "cli/commands.h"
#include "core/error.h"

namespace ecmoe::cli {

namespace {
const dist::Comm kSingle = dist::Comm::single();
const dist::Comm* g_comm = &kSingle;  // main's MpiSession outlives every command
}  // namespace

void set_comm(const dist::Comm* comm) { g_comm = comm ? comm : &kSingle; }
const dist::Comm& comm() { return *g_comm; }

void require_one_process(const std::string& command) {
  ECMOE_CHECK(!comm().parallel(), "`ecmoe ", command,
              "` runs in one process: start it without mpirun (train, eval, compare's "
              "pre-training suites and bench run under mpirun)");
}

}  // namespace ecmoe::cli

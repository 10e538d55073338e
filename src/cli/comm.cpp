#include "cli/commands.h"

namespace ecmoe::cli {

namespace {
const dist::Comm kSingle = dist::Comm::single();
const dist::Comm* g_comm = &kSingle;  // main's MpiSession outlives every command
}  // namespace

void set_comm(const dist::Comm* comm) { g_comm = comm ? comm : &kSingle; }
const dist::Comm& comm() { return *g_comm; }

}  // namespace ecmoe::cli

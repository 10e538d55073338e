// Thread count for the whole engine (OpenMP). Results never depend on it: every parallel loop
// splits work at boundaries fixed by the problem size, never by the number of threads.
#pragma once
#include <string>

namespace ecmoe {

// Cores available to this process (the default thread count).
int default_thread_count();
// The most threads set_thread_count accepts: 4 × the machine's hardware threads, at least 64.
// More only oversubscribes the cores (and tens of thousands crash or hang the OpenMP runtime).
int max_thread_count();
// Sets OpenMP's thread count; 0 means: OMP_NUM_THREADS if set, else default_thread_count().
// Throws (one line naming the limit) above max_thread_count().
void set_thread_count(int threads);
int thread_count();

// OpenMP's wait policy (docs/training.md, "Sharing the cores"): libgomp reads OMP_WAIT_POLICY and
// GOMP_SPINCOUNT once, when it is loaded, before main. Unless the user set either, this sets
// OMP_WAIT_POLICY=passive and re-executes the program (/proc/self/exe) with the same arguments,
// so idle threads sleep at once instead of spinning ~300,000 times, and a machine shared with
// another process degrades gracefully. Returns normally when nothing is to be done (or exec
// fails); call it first thing in main.
inline constexpr const char* kWaitPolicy = "passive";
void apply_wait_policy(char** argv);
// "OMP_WAIT_POLICY=passive (ecmoe's default)", "OMP_WAIT_POLICY=active (from the environment)", ...
std::string wait_policy_description();

}  // namespace ecmoe

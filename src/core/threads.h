// Thread count for the whole engine (OpenMP). Results never depend on it: every parallel loop
// splits work at boundaries fixed by the problem size, never by the number of threads.
#pragma once

namespace ecmoe {

// Cores available to this process (the default thread count).
int default_thread_count();
// Sets OpenMP's thread count; 0 means: OMP_NUM_THREADS if set, else default_thread_count().
void set_thread_count(int threads);
int thread_count();

}  // namespace ecmoe

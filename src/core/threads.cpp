#include "core/threads.h"

#include <omp.h>
#include <sched.h>

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace ecmoe {

int default_thread_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return omp_get_num_procs();
}

void set_thread_count(int threads) {
  ECMOE_CHECK(threads >= 0, "thread count must be >= 0, got ", threads);
  if (threads == 0) {
    if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
      threads = std::atoi(env);
      ECMOE_CHECK(threads > 0, "OMP_NUM_THREADS must be a positive integer, got '", env, "'");
    } else {
      threads = default_thread_count();
    }
  }
  omp_set_num_threads(threads);
}

int thread_count() { return omp_get_max_threads(); }

}  // namespace ecmoe

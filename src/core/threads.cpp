#include "core/threads.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>
#include <system_error>
#include <thread>

#include "core/error.h"

namespace ecmoe {

namespace {

// Set in the environment of the re-executed process, so it does not re-execute again.
constexpr const char* kReexecMark = "ECMOE_WAIT_POLICY_SET";

std::string limit_text() {
  return "at most " + std::to_string(max_thread_count()) + " (4 x the " +
         std::to_string(std::thread::hardware_concurrency()) +
         " hardware threads, at least 64; more only oversubscribes the cores)";
}

}  // namespace

int default_thread_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return omp_get_num_procs();
}

int max_thread_count() {
  const int hardware = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(64, 4 * hardware);
}

void set_thread_count(int threads) {
  ECMOE_CHECK(threads >= 0, "thread count must be >= 0, got ", threads);
  const int limit = max_thread_count();
  if (threads == 0) {
    if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
      // OMP_NUM_THREADS may be a list ("4,2"): its first entry is ours.
      const char* end = env + std::char_traits<char>::length(env);
      const auto r = std::from_chars(env, end, threads);
      ECMOE_CHECK(r.ec == std::errc() && threads > 0 && (r.ptr == end || *r.ptr == ','),
                  "OMP_NUM_THREADS must be a positive integer, got '", env, "'");
      ECMOE_CHECK(threads <= limit, "OMP_NUM_THREADS=", threads, " is too many: ", limit_text());
    } else {
      threads = default_thread_count();
    }
  }
  ECMOE_CHECK(threads <= limit, "--threads ", threads, " is too many: ", limit_text());
  omp_set_num_threads(threads);
}

int thread_count() { return omp_get_max_threads(); }

void apply_wait_policy(char** argv) {
  if (std::getenv(kReexecMark) || std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT"))
    return;
  if (setenv("OMP_WAIT_POLICY", kWaitPolicy, 1) != 0 || setenv(kReexecMark, "1", 1) != 0) return;
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): run on with libgomp's default policy; the variables stay set for
  // any child process.
}

std::string wait_policy_description() {
  std::string text;
  for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    if (const char* value = std::getenv(name))
      text += (text.empty() ? "" : ", ") + std::string(name) + "=" + value;
  if (text.empty()) return "libgomp's default (spins ~300,000 times before sleeping)";
  return text + (std::getenv(kReexecMark) ? " (ecmoe's default)" : " (from the environment)");
}

}  // namespace ecmoe

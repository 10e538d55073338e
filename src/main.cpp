// ecmoe: command-line entry point. Errors are one line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "dist/comm.h"

int main(int argc, char** argv) {
  // Under mpirun every rank runs this; an error on any rank aborts the job (Comm::abort), so no
  // rank waits forever in a collective.
  std::optional<ecmoe::dist::MpiSession> mpi;
  try {
    mpi.emplace(&argc, &argv);
  } catch (const ecmoe::Error& e) {
    std::fprintf(stderr, "ecmoe: error: %s\n", e.what());
    return 1;
  }
  const ecmoe::dist::Comm& comm = mpi->comm();
  ecmoe::cli::set_comm(&comm);
  CLI::App app{"ecmoe: Mixture-of-Experts transformers with expert choice routing"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "Threads (default: OMP_NUM_THREADS, else all cores)")
      ->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([&] { ecmoe::set_thread_count(threads); });
  ecmoe::cli::register_info(app);
  ecmoe::cli::register_bench(app);
  ecmoe::cli::register_prepare(app);
  ecmoe::cli::register_train(app);
  ecmoe::cli::register_eval(app);
  ecmoe::cli::register_compare(app);
  ecmoe::cli::register_finetune(app);
  ecmoe::cli::register_calibrate(app);
  ecmoe::cli::register_generate(app);
  ecmoe::cli::register_inspect(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ecmoe::Error& e) {
    if (comm.parallel()) comm.abort(e.what());
    std::fprintf(stderr, "ecmoe: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    if (comm.parallel()) comm.abort(std::string("internal error: ") + e.what());
    std::fprintf(stderr, "ecmoe: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

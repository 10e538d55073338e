// ecmoe: command-line entry point. Errors are one line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "cli/usage.h"
#include "core/error.h"
#include "core/threads.h"
#include "dist/comm.h"

int main(int argc, char** argv) {
  // Before anything else: may re-execute the program with OpenMP's wait policy set (threads.h).
  ecmoe::apply_wait_policy(argv);
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
  app.add_option("--threads", threads,
                 "Threads (default: OMP_NUM_THREADS, else all cores; at most " +
                     std::to_string(ecmoe::max_thread_count()) + ")")
      ->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([&] { ecmoe::set_thread_count(threads); });
  ecmoe::cli::register_info(app);
  ecmoe::cli::register_bench(app);
  ecmoe::cli::register_prepare(app);
  ecmoe::cli::register_train(app);
  ecmoe::cli::register_eval(app);
  ecmoe::cli::register_compare(app);
  ecmoe::cli::register_finetune(app);
  ecmoe::cli::register_predict(app);
  ecmoe::cli::register_calibrate(app);
  ecmoe::cli::register_generate(app);
  ecmoe::cli::register_inspect(app);
  try {
    ecmoe::cli::check_command_names(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A usage error: one line and exit status 1, like every other error (docs/training.md).
    const std::string message = ecmoe::cli::usage_message(app, e);
    if (comm.parallel()) comm.abort(message);
    std::fprintf(stderr, "ecmoe: error: %s (see --help)\n", message.c_str());
    return 1;
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

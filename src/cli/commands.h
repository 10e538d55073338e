// Each subcommand lives in its own file and registers itself on the top-level app; its callback
// runs the command and throws ecmoe::Error on bad input.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "dist/comm.h"

namespace ecmoe::cli {

void register_info(CLI::App& app);
void register_bench(CLI::App& app);
void register_prepare(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_compare(CLI::App& app);
void register_finetune(CLI::App& app);
void register_predict(CLI::App& app);
void register_calibrate(CLI::App& app);
void register_generate(CLI::App& app);
void register_inspect(CLI::App& app);

// The ranks commands run on: set once by main (dist::MpiSession) before parsing; one process
// until then. train, eval, compare and bench run over them; only rank 0 prints results.
void set_comm(const dist::Comm* comm);
const dist::Comm& comm();
// Commands that are not parallel (everything but train, eval, compare's pre-training suites and
// bench) refuse to run under mpirun, instead of every rank doing the same work and writing the
// same files: "`ecmoe <command>` runs in one process ...".
void require_one_process(const std::string& command);

}  // namespace ecmoe::cli

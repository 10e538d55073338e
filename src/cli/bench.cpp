// `ecmoe bench ...`: benchmarks (subcommands register here).
#include "cli/commands.h"

namespace ecmoe::cli {

void register_bench_attention(CLI::App& bench);
void register_bench_layer(CLI::App& bench);
void register_bench_train(CLI::App& bench);

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  register_bench_attention(*bench);
  register_bench_layer(*bench);
  register_bench_train(*bench);
}

}  // namespace ecmoe::cli

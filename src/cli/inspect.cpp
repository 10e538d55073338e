// `ecmoe inspect`: which experts took each token of a text, with their gates, per MoE layer (a
// table on the terminal), and optionally a PNG heat map of the gates (tokens × layer·expert)
// drawn by gnuplot. Routing is the model's own over the text as one sequence; --router replaces
// it (e.g. expert_threshold for an expert-choice checkpoint).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "model/transformer.h"
#include "train/checkpoint.h"

namespace ecmoe::cli {

namespace {
struct InspectArgs {
  std::string checkpoint;
  std::string text;
  std::string tokenizer;
  std::string router;
  std::string png;
};

bool gnuplot_available() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

// Heat map of gates [tokens, columns] (0 where the expert did not take the token) with gnuplot.
void write_png(const std::string& path, const std::vector<std::vector<float>>& gates,
               const std::vector<std::string>& pieces, int n_layers_shown, int experts) {
  ECMOE_CHECK(gnuplot_available(),
              "inspect --png: gnuplot is not installed (apt-get install gnuplot-nox)");
  const std::string data = path + ".tmp-data", png = path + ".tmp.png";
  std::string matrix;
  for (const auto& row : gates) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      char value[32];
      std::snprintf(value, sizeof value, "%s%.4f", c ? " " : "", row[c]);
      matrix += value;
    }
    matrix += "\n";
  }
  write_file_atomically(data, matrix);
  std::string xtics;
  for (std::size_t t = 0; t < pieces.size(); ++t) {
    std::string label;
    const std::string& piece = pieces[t];
    for (std::size_t i = 0; i < piece.size(); ++i) {
      if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {  // SentencePiece's word-start mark
        label.push_back(' ');
        i += 2;
      } else {
        const char ch = piece[i];
        label.push_back(ch == '"' || ch == '\\' || ch == '\'' ? '_' : ch);
      }
    }
    xtics += (t ? ", " : "") + std::string("\"") + label + "\" " + std::to_string(t);
  }
  const int width = std::max(640, 24 * int(pieces.size()) + 200);
  const int height = std::max(320, 18 * n_layers_shown * experts + 160);
  const std::string script =
      "set terminal png size " + std::to_string(width) + "," + std::to_string(height) +
      "\nset output '" + png + "'\nset title 'gate per token (x) and layer:expert (y)'\n" +
      "set bmargin 8\nset xtics rotate by 90 right (" + xtics +
      ")\nset ylabel 'MoE layer (0, 1, ...) * " + std::to_string(experts) +
      " + expert'\nset xrange [-0.5:" + std::to_string(double(pieces.size()) - 0.5) +
      "]\nset yrange [-0.5:" + std::to_string(double(n_layers_shown * experts) - 0.5) +
      "]\nset cblabel 'gate'\nset palette defined (0 'white', 1 'dark-blue')\n" + "plot '" + data +
      "' matrix using 2:1:3 with image notitle\n";
  const std::string script_path = path + ".tmp-gnuplot";
  write_file_atomically(script_path, script);
  const int rc = std::system(("gnuplot '" + script_path + "' 2>&1").c_str());
  std::filesystem::remove(data);
  std::filesystem::remove(script_path);
  ECMOE_CHECK(rc == 0 && std::filesystem::exists(png), "inspect --png: gnuplot failed (exit ", rc,
              ")");
  std::filesystem::rename(png, path);
}
}  // namespace

void register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show which experts take each token of a text");
  auto args = std::make_shared<InspectArgs>();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file")->required();
  cmd->add_option("--text", args->text, "Text to route")->required();
  cmd->add_option("--png", args->png, "Also write a heat map of the gates (needs gnuplot)");
  cmd->add_option("--router", args->router,
                  "Route with this router instead of the checkpoint's (expert_choice <-> "
                  "expert_threshold)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Tokenizer model (default: the one recorded in the checkpoint)");
  cmd->callback([args] {
    require_one_process("inspect");
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    const TrainConfig& config = checkpoint.config();
    ModelConfig model_config = config.model;
    if (!args->router.empty()) {
      const RouterKind r = parse_router_kind(args->router);
      ECMOE_CHECK(r == model_config.moe.router ||
                      (router_has_cutoffs(r) && router_has_cutoffs(model_config.moe.router)),
                  "inspect --router: a checkpoint trained with ",
                  router_name(model_config.moe.router), " cannot route with ", router_name(r));
      model_config.moe.router = r;
    }
    Transformer model(model_config);
    FlatBuffer params(model.table()), state(model.state_table());
    checkpoint.load_params(params);
    model.init_state(state);
    checkpoint.load_router_state(state);
    const data::Tokenizer tokenizer = data::Tokenizer::load(
        args->tokenizer.empty() ? checkpoint.data().tokenizer : args->tokenizer);
    ECMOE_CHECK(tokenizer.vocab_size() == model_config.vocab_size, "inspect: the tokenizer has ",
                tokenizer.vocab_size(), " ids, the model ", model_config.vocab_size);
    std::vector<int> ids = tokenizer.encode(args->text);
    ECMOE_CHECK(!ids.empty(), "inspect: the text is empty");
    if (int(ids.size()) > model_config.seq_len) {
      std::fprintf(stderr, "inspect: the text has %zu tokens; routing the first %d\n", ids.size(),
                   model_config.seq_len);
      ids.resize(model_config.seq_len);
    }
    const int n = int(ids.size());
    Batch batch;
    batch.batch_size = 1;
    batch.seq_len = n;
    batch.tokens.assign(ids.begin(), ids.end());
    batch.targets.assign(n, -1);
    model.forward(params, state, batch, /*training=*/false, 0);

    std::vector<int> layers;
    for (int l = 0; l < model_config.n_layers; ++l)
      if (model_config.is_moe_layer(l)) layers.push_back(l);
    const int e = model_config.moe.expert_count();
    std::vector<std::vector<float>> gates(n, std::vector<float>(layers.size() * e, 0.f));
    std::vector<std::string> pieces;
    std::printf("%s, router %s; per token and MoE layer: expert:gate\n", args->checkpoint.c_str(),
                router_name(model_config.moe.router).c_str());
    std::printf("%4s  %-16s", "pos", "token");
    for (int l : layers) std::printf("  layer %-18d", l);
    std::printf("\n");
    for (int t = 0; t < n; ++t) {
      pieces.push_back(tokenizer.piece(ids[t]));
      std::printf("%4d  %-16s", t, pieces.back().c_str());
      for (std::size_t li = 0; li < layers.size(); ++li) {
        const RoutingPlan& plan = model.ffn_layer(layers[li]).plan();
        std::string cell;
        for (int s = plan.token_offsets[t]; s < plan.token_offsets[t + 1]; ++s) {
          const int slot = plan.token_slots[s];
          int expert = 0;
          while (plan.expert_offsets[expert + 1] <= slot) ++expert;
          char buf[32];
          std::snprintf(buf, sizeof buf, "%s%d:%.2f", cell.empty() ? "" : " ", expert,
                        plan.slot_gate[slot]);
          cell += buf;
          gates[t][li * e + expert] = plan.slot_gate[slot];
        }
        std::printf("  %-24s", cell.empty() ? "-" : cell.c_str());
      }
      std::printf("\n");
    }
    if (!args->png.empty()) {
      write_png(args->png, gates, pieces, int(layers.size()), e);
      std::printf("wrote %s\n", args->png.c_str());
    }
  });
}

}  // namespace ecmoe::cli

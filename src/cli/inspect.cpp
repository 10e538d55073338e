// `ecmoe inspect`: which experts took each token of a text, with their gates, per MoE layer (a
// table on the terminal), and optionally a PNG heat map of the gates (tokens × layer·expert)
// drawn by gnuplot. Routing is the model's own over the text as one sequence; --router replaces
// it (e.g. expert_threshold for an expert-choice checkpoint).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "io/gnuplot.h"
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

// Columns on the terminal: a piece such as "▁the" is 6 bytes but 4 columns wide.
int display_width(const std::string& text) {
  int width = 0;
  for (const char c : text) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return width;
}

std::string pad_right(const std::string& text, int width) {
  return text + std::string(std::size_t(std::max(0, width - display_width(text))), ' ');
}

// A tick label for a piece: SentencePiece's word-start mark shown as a space.
std::string tick_label(const std::string& piece) {
  std::string label;
  for (std::size_t i = 0; i < piece.size(); ++i) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
      label.push_back(' ');
      i += 2;
    } else {
      label.push_back(piece[i]);
    }
  }
  return label;
}

// Removes a scratch folder however the function that made it ends.
struct ScratchFolder {
  std::filesystem::path path;
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

// Checked before any work: gnuplot is there and `path` can be a new file.
void check_png_target(const std::string& path) {
  namespace fs = std::filesystem;
  find_gnuplot("inspect --png");
  const fs::path target = fs::absolute(path);
  ECMOE_CHECK(!fs::is_directory(target), "inspect --png: ", path, " is a folder");
  ECMOE_CHECK(fs::is_directory(target.parent_path()), "inspect --png: the folder of ", path,
              " does not exist");
}

// Heat map of gates [tokens, columns] (0 where the expert did not take the token) with gnuplot,
// run in a scratch folder beside `path` on fixed file names; the PNG is then renamed to `path`.
// Pieces reach the script only through gnuplot_quote (no shell, no backquote substitution).
void write_png(const std::string& path, const std::vector<std::vector<float>>& gates,
               const std::vector<std::string>& pieces, int n_layers_shown, int experts) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(path);
  const ScratchFolder scratch{target.parent_path() /
                              (".inspect-png." + std::to_string(::getpid()))};
  std::error_code ec;
  fs::remove_all(scratch.path, ec);
  fs::create_directory(scratch.path, ec);
  ECMOE_CHECK(!ec, "inspect --png: cannot create a scratch folder beside ", path, ": ",
              ec.message());
  std::string matrix;
  for (const auto& row : gates) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      char value[32];
      std::snprintf(value, sizeof value, "%s%.4f", c ? " " : "", row[c]);
      matrix += value;
    }
    matrix += "\n";
  }
  write_file_atomically((scratch.path / "gates.dat").string(), matrix);
  std::string xtics;
  for (std::size_t t = 0; t < pieces.size(); ++t)
    xtics += (t ? ", " : "") + gnuplot_quote(tick_label(pieces[t])) + " " + std::to_string(t);
  const int rows = n_layers_shown * experts;
  const int width = std::max(640, 24 * int(pieces.size()) + 240);
  // Room for the y label (about 220 px of text) beside even a one-layer, few-expert plot.
  const int height = std::max(440, 18 * rows + 220);
  const std::string script =
      "set terminal pngcairo noenhanced size " + std::to_string(width) + "," +
      std::to_string(height) + " font 'sans,10'\nset output 'heatmap.png'\n" +
      "set title 'gate per token (x) and layer:expert (y)'\n" +
      "set lmargin 12\nset rmargin 12\nset bmargin 8\nset tmargin 3\n" +
      "set xtics rotate by 90 right (" + xtics + ")\nset ylabel " +
      gnuplot_quote("MoE layer (0, 1, ..) * " + std::to_string(experts) + " + expert") +
      "\nset xrange [-0.5:" + std::to_string(double(pieces.size()) - 0.5) +
      "]\nset yrange [-0.5:" + std::to_string(double(rows) - 0.5) +
      "]\nset cblabel 'gate'\nset palette defined (0 'white', 1 'dark-blue')\n" +
      "plot 'gates.dat' matrix using 2:1:3 with image notitle\n";
  write_file_atomically((scratch.path / "heatmap.gp").string(), script);
  run_gnuplot(scratch.path.string(), "heatmap.gp", "inspect --png");
  const fs::path png = scratch.path / "heatmap.png";
  ECMOE_CHECK(fs::exists(png) && fs::file_size(png) > 0, "inspect --png: gnuplot wrote no image");
  fs::rename(png, target, ec);
  ECMOE_CHECK(!ec, "inspect --png: cannot write ", path, ": ", ec.message());
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
    if (!args->png.empty()) check_png_target(args->png);
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
    const data::Tokenizer tokenizer =
        load_checkpoint_tokenizer(checkpoint, args->tokenizer, "--tokenizer PATH");
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
    std::printf("%4s  %s", "pos", pad_right("token", 16).c_str());
    for (int l : layers) std::printf("  layer %-18d", l);
    std::printf("\n");
    for (int t = 0; t < n; ++t) {
      pieces.push_back(tokenizer.piece(ids[t]));
      std::printf("%4d  %s", t, pad_right(pieces.back(), 16).c_str());
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

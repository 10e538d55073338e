// `ecmoe predict`: classify new text with a fine-tuned model (`ecmoe finetune --out DIR` writes
// DIR/model.safetensors): the predicted label and the probability of every class, per example, as
// TSV or JSON lines on stdout (docs/finetune.md, "Predicting").
#include "finetune/predict.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "core/timer.h"
#include "finetune/saved_model.h"
#include "finetune/tsv_task.h"
#include "train/progress.h"

namespace ecmoe::cli {

namespace {

struct PredictArgs {
  std::string checkpoint;
  std::vector<std::string> texts, text_pairs;
  std::string input;
  std::string text_column, text_pair_column;
  std::string tokenizer;
  int batch_size = 0;
  bool json = false;
  bool progress = false;
  std::string device = "cpu";
};

constexpr const char* kFooter =
    "Output (stdout), one row per example in input order: TSV with the header\n"
    "  [gold]  predicted  p_<label> (one per class, label order)  text  [text_pair]\n"
    "(gold when the input has the model's label column; tabs and newlines in texts become\n"
    "spaces), or with --json one JSON object per line: {\"predicted\", \"probabilities\": {label: "
    "p},\n"
    "\"text\", ...}. Texts longer than the model's max_len tokens are cut (counted in a warning);\n"
    "empty texts are predicted from [CLS] alone (counted). With gold labels the accuracy is "
    "printed\n"
    "on stderr. Progress goes to stderr on a terminal, or with --progress.\n";

// Progress over examples on stderr: redrawn in place on a terminal, else (with --progress) a line
// at every tenth of the input.
class PredictProgress {
 public:
  PredictProgress(bool terminal, bool lines) : terminal_(terminal), lines_(lines) {}
  void operator()(int64_t done, int64_t total) {
    if (terminal_) {
      const double elapsed = now_seconds() - start_;
      const double eta = done > 0 ? elapsed / double(done) * double(total - done) : 0;
      std::fprintf(stderr, "\rpredict: %lld/%lld examples, ETA %s\x1b[K", (long long)done,
                   (long long)total, format_duration(eta).c_str());
      if (done == total) std::fputs("\n", stderr);
    } else if (lines_ && (done * 10 / total > reported_ * 10 / total || done == total)) {
      std::fprintf(stderr, "predict: %lld/%lld examples\n", (long long)done, (long long)total);
      reported_ = done;
    }
    std::fflush(stderr);
  }

 private:
  bool terminal_, lines_;
  int64_t reported_ = 0;
  double start_ = now_seconds();
};

std::string plural(int64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

void run_predict(const PredictArgs& args, bool texts_given) {
  const TrainDevice* device = train_device(args.device);  // an unusable device fails first
  const finetune::SavedClassifier saved = finetune::SavedClassifier::open(args.checkpoint);
  const finetune::ClassifierInfo& info = saved.info();
  const std::vector<std::string>& labels = info.labels;
  finetune::TsvColumns columns{
      args.text_column.empty() ? info.finetune.text_column : args.text_column,
      args.text_pair_column.empty() ? info.finetune.text_pair_column : args.text_pair_column,
      info.finetune.label_column};
  std::vector<finetune::Example> examples;
  std::vector<int> gold;
  int64_t empty = 0;
  if (texts_given) {
    ECMOE_CHECK(!info.pairs || args.text_pairs.size() == args.texts.size(), "the model of '",
                args.checkpoint, "' classifies sentence pairs: give a --text-pair for each --text");
    ECMOE_CHECK(info.pairs || args.text_pairs.empty(), "the model of '", args.checkpoint,
                "' classifies single texts: --text-pair does not apply");
    for (size_t i = 0; i < args.texts.size(); ++i) {
      examples.push_back({args.texts[i], info.pairs ? args.text_pairs[i] : "", 0});
      const bool blank = args.texts[i].find_first_not_of(" \t\r\n") == std::string::npos;
      empty += blank;
    }
  } else {
    ECMOE_CHECK(!info.pairs || !columns.text_pair.empty(), "the model of '", args.checkpoint,
                "' classifies sentence pairs: name the second text's column with "
                "--text-pair-column");
    if (!info.pairs) columns.text_pair.clear();
    const finetune::TsvReadOptions read{
        .labels = false,
        .labels_if_present = true,
        .skip_empty = false,
        .hint = "choose the column with --text-column" +
                std::string(info.pairs ? " and --text-pair-column" : "")};
    const finetune::TsvRows rows = args.input == "-"
                                       ? finetune::read_tsv_rows(std::cin, "<stdin>", columns, read)
                                       : finetune::read_tsv_rows(args.input, columns, read);
    empty = rows.empty_texts;
    const std::string path = args.input == "-" ? "<stdin>" : args.input;
    for (size_t i = 0; i < rows.text_a.size(); ++i) {
      examples.push_back({rows.text_a[i], rows.text_b[i], 0});
      if (!rows.has_labels) continue;
      const auto it = std::find(labels.begin(), labels.end(), rows.labels[i]);
      ECMOE_CHECK(it != labels.end(), path, ":", rows.lines[i], ": label '", rows.labels[i],
                  "' (column '", columns.label, "') is not one of the model's labels");
      gold.push_back(int(it - labels.begin()));
    }
    ECMOE_CHECK(!examples.empty(), path, ": no rows to classify");
  }
  finetune::Predictor predictor(saved, args.tokenizer, device);
  const finetune::EncodedSplit encoded = predictor.encode(examples);
  if (encoded.truncated > 0)
    std::fprintf(stderr,
                 "ecmoe: warning: %lld of %lld texts were longer than the model's max_len %d "
                 "tokens and were cut to it\n",
                 (long long)encoded.truncated, (long long)examples.size(), info.max_len);
  if (empty > 0)
    std::fprintf(stderr, "ecmoe: warning: %s of %lld are empty: predicted from [CLS] alone\n",
                 plural(empty, "text").c_str(), (long long)examples.size());
  const int batch_size = args.batch_size > 0 ? args.batch_size : info.finetune.eval_batch_size;
  const bool terminal = Progress::stderr_is_terminal();
  const bool show = (terminal || args.progress) && int64_t(examples.size()) > 4 * batch_size;
  finetune::ClassifyProgress progress;
  if (show) progress = PredictProgress(terminal, args.progress);
  const finetune::Classified out = predictor.classify(encoded, batch_size, progress);
  const finetune::PredictionFormat format{&labels, !gold.empty(), info.pairs};
  if (!args.json) std::fputs(finetune::prediction_tsv_header(format).c_str(), stdout);
  int64_t correct = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const int g = gold.empty() ? -1 : gold[i];
    const float* p = out.probabilities.data() + i * labels.size();
    const std::string row =
        args.json ? finetune::prediction_json_line(format, examples[i], g, out.predicted[i], p)
                  : finetune::prediction_tsv_row(format, examples[i], g, out.predicted[i], p);
    std::fwrite(row.data(), 1, row.size(), stdout);
    correct += g == out.predicted[i];
  }
  std::fflush(stdout);
  if (!gold.empty())
    std::fprintf(stderr, "predict: accuracy %.4f (%lld of %lld; gold labels from column '%s')\n",
                 double(correct) / double(gold.size()), (long long)correct, (long long)gold.size(),
                 columns.label.c_str());
}

}  // namespace

void register_predict(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "predict", "Classify text with a fine-tuned model (from `ecmoe finetune --out DIR`)");
  auto args = std::make_shared<PredictArgs>();
  cmd->add_option("--checkpoint", args->checkpoint,
                  "The fine-tuned model: DIR/model.safetensors of `ecmoe finetune --out DIR`")
      ->required();
  auto* text = cmd->add_option("--text", args->texts, "A text to classify (repeatable)");
  cmd->add_option("--text-pair", args->text_pairs,
                  "Sentence-pair models: the second text of each --text (repeatable)");
  auto* input = cmd->add_option("--input", args->input,
                                "A TSV file with a header line (or - for stdin), one text a row");
  cmd->add_option("--text-column", args->text_column,
                  "--input: the text column (default: the one the model was fine-tuned on)");
  cmd->add_option("--text-pair-column", args->text_pair_column,
                  "--input, sentence-pair models: the second text's column (default: the model's)");
  cmd->add_option("--batch-size", args->batch_size,
                  "Examples per batch (default: the fine-tuning eval_batch_size; the same size "
                  "reproduces fine-tuning's figures exactly)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tokenizer", args->tokenizer,
                  "The tokenizer model, when the recorded one is not found (its checksum must "
                  "match)");
  cmd->add_flag("--json", args->json, "JSON lines instead of TSV");
  cmd->add_option("--device", args->device,
                  "Where the encoder runs: cpu, or cuda (an NVIDIA GPU; needs a build with "
                  "-DECMOE_CUDA=ON, docs/cuda.md); the head runs on the CPU")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--progress", args->progress,
                "Progress lines on stderr even when it is not a terminal");
  cmd->footer(kFooter);
  cmd->callback([args, text, input] {
    require_one_process("predict");
    ECMOE_CHECK(
        (text->count() > 0) != (input->count() > 0),
        "give the texts with --text \"...\" or a file with --input FILE.tsv (- for stdin), ",
        text->count() > 0 ? "not both" : "one of them");
    ECMOE_CHECK(input->count() == 0 || !args->input.empty(), "--input is empty: give a TSV file");
    run_predict(*args, text->count() > 0);
  });
}

}  // namespace ecmoe::cli

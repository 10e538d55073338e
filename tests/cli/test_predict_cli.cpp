// Fine-tuning on your own TSV files and `ecmoe predict`, through the real binary: a tiny encoder
// pre-trained here, string-labelled tasks the test writes (5 classes: which topic word a sentence
// has), the saved model.safetensors, predictions that reproduce finetune's test accuracy, and the
// one-line errors of bad files and bad predict input.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_test_util.h"

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::cli_test::run_ecmoe;
using ecmoe::train_test::read_text;
using ecmoe::train_test::TempDir;
using ecmoe::train_test::write_text;

// "text<TAB>label" rows: filler words, plus one word of the label's topic (none for "land").
std::string topic_rows(int rows, uint64_t seed, const std::string& header = "text\tlabel") {
  static const std::vector<std::string> filler = {
      "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "house", "city"};
  static const std::map<std::string, std::vector<std::string>> topics = {
      {"land", {}},
      {"sea", {"whale", "ship", "sea", "captain"}},
      {"politics", {"vote", "nation", "union", "state"}},
      {"time", {"day", "night", "year"}},
      {"court", {"jury", "law", "king"}}};
  const ecmoe::Rng rng(seed, 0);
  uint64_t k = 0;
  std::string text = header + "\n";
  for (int i = 0; i < rows; ++i) {
    auto topic = topics.begin();
    std::advance(topic, int(rng.below(k++, topics.size())));
    const int words = 5 + int(rng.below(k++, 4));
    const int at = int(rng.below(k++, uint64_t(words)));
    for (int w = 0; w < words; ++w) {
      const auto& pool = (w == at && !topic->second.empty()) ? topic->second : filler;
      text += (w ? " " : "") + pool[rng.below(k++, pool.size())];
    }
    text += " .\t" + topic->first + "\n";
  }
  return text;
}

// Data rows (after the header) of a TSV, split into fields.
std::vector<std::vector<std::string>> tsv_rows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::istringstream f(line);
    std::string field;
    while (std::getline(f, field, '\t')) fields.push_back(field);
    rows.push_back(fields);
  }
  return rows;
}

// A one-line error: "ecmoe: error: ..." and nothing else.
void expect_one_line_error(const CliRun& r, const std::string& fragment) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.rfind("ecmoe: error: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_TRUE(contains(r.err, fragment)) << "expected '" << fragment << "' in: " << r.err;
}

class PredictCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("predict-cli");
    ASSERT_EQ(ecmoe::cli_test::pretrain_tiny_encoder(*dir_, 10), "");
  }
  static void TearDownTestSuite() { delete dir_; }
  static CliRun run(const std::string& args) { return run_ecmoe(args, *dir_ / "stderr.txt"); }
  static std::string path(const std::string& name) { return *dir_ / name; }
  static std::string pretrained() { return " --checkpoint " + path("pre/checkpoint.safetensors"); }
  static TempDir* dir_;
};
TempDir* PredictCli::dir_ = nullptr;

TEST_F(PredictCli, FiveStringLabelsTrainAndReportPerClassFigures) {
  write_text(path("topics/train.tsv"), topic_rows(400, 1));
  write_text(path("topics/test.tsv"), topic_rows(100, 2));
  const CliRun ft =
      run("finetune" + pretrained() + " --task tsv:" + path("topics") +
          " --set steps=80 --set peak_lr=0.003 --set patience=0 --out " + path("ft5"));
  ASSERT_EQ(ft.status, 0) << ft.err;
  // The dev split is carved from train.tsv (no dev.tsv), and the summary says so.
  EXPECT_TRUE(contains(ft.out, "held out of train.tsv")) << ft.out;
  const auto r = nlohmann::json::parse(read_text(path("ft5/result.json")));
  EXPECT_EQ(r["labels"], nlohmann::json({"court", "land", "politics", "sea", "time"}));
  EXPECT_EQ(r["examples"]["dev"], 40);
  EXPECT_EQ(r["splits"]["test"], "test.tsv");
  const auto& test = r["test"];
  ASSERT_EQ(test["per_class"].size(), 5u);
  int64_t support = 0;
  for (const auto& c : test["per_class"]) {
    EXPECT_GE(c["f1"].get<double>(), 0.0);
    EXPECT_LE(c["f1"].get<double>(), 1.0);
    support += c["support"].get<int64_t>();
  }
  EXPECT_EQ(support, 100);
  ASSERT_EQ(test["confusion"]["matrix"].size(), 5u);
  EXPECT_GT(test["accuracy"].get<double>(), r["majority_baseline"]["accuracy"].get<double>() + 0.2);
  // predictions.tsv: gold, predicted, one probability per class, the text.
  const std::string predictions = read_text(path("ft5/predictions.tsv"));
  EXPECT_EQ(predictions.substr(0, predictions.find('\n')),
            "gold\tpredicted\tp_court\tp_land\tp_politics\tp_sea\tp_time\ttext");
  EXPECT_EQ(tsv_rows(predictions).size(), 100u);
  EXPECT_TRUE(std::filesystem::exists(path("ft5/model.safetensors")));
}

TEST_F(PredictCli, PredictReproducesTheTestAccuracyFinetuneReported) {
  write_text(path("own/train.tsv"), topic_rows(300, 3));
  write_text(path("own/dev.tsv"), topic_rows(50, 4));
  write_text(path("own/test.tsv"), topic_rows(80, 5));
  const CliRun ft = run("finetune" + pretrained() + " --train " + path("own/train.tsv") +
                        " --dev " + path("own/dev.tsv") + " --test " + path("own/test.tsv") +
                        " --set steps=40 --set peak_lr=0.003 --json --out " + path("ft"));
  ASSERT_EQ(ft.status, 0) << ft.err;
  const double reported = nlohmann::json::parse(ft.out)["test"]["accuracy"].get<double>();

  const CliRun p = run("predict --checkpoint " + path("ft/model.safetensors") + " --input " +
                       path("own/test.tsv"));
  ASSERT_EQ(p.status, 0) << p.err;
  const auto gold = tsv_rows(read_text(path("own/test.tsv")));
  const auto rows = tsv_rows(p.out);
  ASSERT_EQ(rows.size(), gold.size());
  int correct = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 8u);  // gold, predicted, 5 probabilities, text
    EXPECT_EQ(rows[i][7], gold[i][0]);
    correct += rows[i][1] == gold[i][1];
  }
  EXPECT_DOUBLE_EQ(double(correct) / double(rows.size()), reported);
  // The same rows as finetune's own predictions.tsv, byte for byte.
  EXPECT_EQ(p.out, read_text(path("ft/predictions.tsv")));

  // Texts without labels, as JSON lines; a text from the command line.
  write_text(path("unlabelled.tsv"), "text\nthe whale and the ship .\n\nthe jury said .\n");
  const CliRun json = run("predict --checkpoint " + path("ft/model.safetensors") + " --input " +
                          path("unlabelled.tsv") + " --json");
  ASSERT_EQ(json.status, 0) << json.err;
  std::istringstream lines(json.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["probabilities"].size(), 5u);
    EXPECT_FALSE(j.contains("gold"));
    ++n;
  }
  EXPECT_EQ(n, 2);
  const CliRun one = run("predict --checkpoint " + path("ft/model.safetensors") +
                         " --text 'the captain of the ship'");
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(tsv_rows(one.out).size(), 1u);
}

TEST_F(PredictCli, BadTaskFilesEachGiveTheirOwnOneLineError) {
  write_text(path("bad/train.tsv"), topic_rows(60, 6));
  const std::string ft =
      "finetune" + pretrained() + " --set steps=2 --train " + path("bad/train.tsv");
  write_text(path("bad/dev.tsv"), "text\tlabel\nthe sea .\tsea\nthe sky .\tweather\n");
  expect_one_line_error(run(ft + " --dev " + path("bad/dev.tsv")),
                        "bad/dev.tsv:3: label 'weather' does not occur in");
  write_text(path("bad/bom.tsv"), "\xEF\xBB\xBFtext\tlabel\nthe sea .\tsea\n");
  expect_one_line_error(run(ft + " --dev " + path("bad/bom.tsv")),
                        "bom.tsv:1: the file starts with a UTF-8 byte-order mark (columns found: "
                        "'text', 'label')");
  write_text(path("bad/column.tsv"), "sentence\tlabel\nthe sea .\tsea\n");
  expect_one_line_error(run(ft + " --dev " + path("bad/column.tsv")),
                        "column.tsv:1: no column 'text' (columns found: 'sentence', 'label'); "
                        "choose the columns with --text-column");
  write_text(path("bad/comma.tsv"), "text,label\nthe sea .,sea\n");
  expect_one_line_error(run(ft + " --dev " + path("bad/comma.tsv")),
                        "comma.tsv:1: no column 'text' (columns found: 'text,label'): the file "
                        "looks comma-separated; give a tab-separated file");
  // The same header errors for a GLUE layout.
  write_text(path("glue/train.tsv"), "sentence,label\nfine,1\n");
  expect_one_line_error(run("finetune" + pretrained() + " --task glue:sst2:" + path("glue")),
                        "(columns found: 'sentence,label'): the file looks comma-separated");
  // A class of one label only, and --set with another trainer's name.
  write_text(path("bad/one.tsv"), "text\tlabel\nthe sea .\tsea\nthe ship .\tsea\n");
  expect_one_line_error(run("finetune" + pretrained() + " --train " + path("bad/one.tsv")),
                        "a classifier needs at least 2 labels");
  expect_one_line_error(run(ft + " --set lr=0.1"), "did you mean 'peak_lr'?");
  expect_one_line_error(run("finetune" + pretrained() + " --task polarity --dev-fraction 0.2"),
                        "--dev-fraction applies to tsv and glue tasks; task polarity has fixed "
                        "splits");
  expect_one_line_error(run(ft + " --task tsv:" + path("bad")), "not both");
}

TEST_F(PredictCli, WarnsAboutEmptyAndCutTextsAndAMissingTestSplit) {
  std::string train = topic_rows(200, 7);
  train += "  \tsea\n\tland\n";  // two empty texts: skipped, counted
  train +=
      "the whale the ship the sea the captain the whale the ship the sea the captain the "
      "whale the ship the sea the captain the whale .\tsea\n";
  write_text(path("warn/train.tsv"), train);
  const CliRun ft = run("finetune" + pretrained() + " --train " + path("warn/train.tsv") +
                        " --dev-fraction 0.2 --set steps=4 --json --out " + path("ftw"));
  ASSERT_EQ(ft.status, 0) << ft.err;
  EXPECT_TRUE(contains(
      ft.err, "warning: " + path("warn/train.tsv") + ": 2 rows with an empty text skipped"))
      << ft.err;
  // The tiny tokenizer (320 pieces) cuts words into many pieces: several texts exceed 32 tokens.
  EXPECT_TRUE(contains(ft.err, "warning: texts longer than max_len 32 tokens were cut to it: "))
      << ft.err;
  EXPECT_TRUE(contains(ft.err, "warning: no test split")) << ft.err;
  const auto r = nlohmann::json::parse(ft.out);
  EXPECT_TRUE(r["test"].is_null());
  EXPECT_EQ(r["examples"]["dev"], 40);  // 20% of the 201 rows kept
  EXPECT_EQ(r["warnings"].size(), 3u);
  // Without a test split predictions.tsv holds dev's.
  EXPECT_EQ(tsv_rows(read_text(path("ftw/predictions.tsv"))).size(), 40u);

  // Lopsided splits: a dev split smaller than the label set, a test split lacking classes.
  write_text(path("warn/dev.tsv"),
             "text\tlabel\nthe sea .\tsea\nthe day .\ttime\nthe fox .\tland\n");
  write_text(path("warn/test.tsv"),
             "text\tlabel\nthe sea .\tsea\nthe ship .\tsea\nthe whale .\tsea\n"
             "the captain .\tsea\nthe sea .\tsea\nthe sea .\tsea\n");
  const CliRun lopsided =
      run("finetune" + pretrained() + " --train " + path("warn/train.tsv") + " --dev " +
          path("warn/dev.tsv") + " --test " + path("warn/test.tsv") + " --set steps=2");
  ASSERT_EQ(lopsided.status, 0) << lopsided.err;
  EXPECT_TRUE(contains(lopsided.err, "warning: the dev split has 3 examples for 5 classes"))
      << lopsided.err;
  EXPECT_TRUE(contains(lopsided.err,
                       "warning: the test split has no example of 4 of the 5 "
                       "classes (court, land, politics, time)"))
      << lopsided.err;
}

TEST_F(PredictCli, BadPredictInputGivesOneLineErrors) {
  write_text(path("p/train.tsv"), topic_rows(80, 8));
  ASSERT_EQ(run("finetune" + pretrained() + " --train " + path("p/train.tsv") +
                " --set steps=2 --out " + path("ftp"))
                .status,
            0);
  const std::string model = " --checkpoint " + path("ftp/model.safetensors");
  expect_one_line_error(run("predict --checkpoint " + path("nothing.safetensors") + " --text x"),
                        "fine-tuned model " + path("nothing.safetensors") + " does not exist");
  expect_one_line_error(run("predict" + pretrained() + " --text x"),
                        "is a pre-training checkpoint, not a fine-tuned classifier");
  write_text(path("p/sentences.tsv"), "sentence\nthe sea .\n");
  expect_one_line_error(run("predict" + model + " --input " + path("p/sentences.tsv")),
                        "sentences.tsv:1: no column 'text' (columns found: 'sentence'); choose the "
                        "column with --text-column");
  const CliRun by_name =
      run("predict" + model + " --input " + path("p/sentences.tsv") + " --text-column sentence");
  EXPECT_EQ(by_name.status, 0) << by_name.err;
  expect_one_line_error(run("predict" + model), "give the texts with --text");
  // A flipped bit in a weight is found by the checksum, not loaded.
  std::string bytes = read_text(path("ftp/model.safetensors"));
  bytes[bytes.size() - 5] ^= 0x10;
  write_text(path("p/damaged.safetensors"), bytes);
  expect_one_line_error(run("predict --checkpoint " + path("p/damaged.safetensors") + " --text x"),
                        "is damaged: its tensor data does not match the checksum in its header");
}

}  // namespace

// `ecmoe eval --text` (raw text scored with the checkpoint's tokenizer) against `ecmoe prepare
// --tokenizer` + `ecmoe eval --data` on the same text, through the real binary, on a tiny decoder
// trained on text the test writes; and their one-line errors.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;
using ecmoe::train_test::TempDir;

namespace {

using ecmoe::data::test::paragraph_text;

class EvalTextCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>("eval-text-cli");
    for (int i = 0; i < 4; ++i)
      ecmoe::train_test::write_text(dir("in/part" + std::to_string(i) + ".txt"),
                                    paragraph_text(uint64_t(i), 40));
    // Held-out text the model never saw: two files of several documents each.
    ecmoe::train_test::write_text(dir("ood/x.txt"), paragraph_text(50, 60));
    ecmoe::train_test::write_text(dir("ood/y.txt"), paragraph_text(51, 30));
    const CliRun prepare = run("prepare --input " + dir("in") + " --out " + dir("data") +
                               " --vocab-size 320 --val-fraction 0.25");
    ASSERT_EQ(prepare.status, 0) << prepare.out << prepare.err;
    const CliRun train = run("train --config tiny --set data.dir=" + dir("data") +
                             " --set steps=4 --set eval.interval=0 --set model.kind=decoder"
                             " --set model.seq_len=16 --out " +
                             dir("dec"));
    ASSERT_EQ(train.status, 0) << train.out << train.err;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static std::string dir(const std::string& name) { return *dir_ / name; }
  static CliRun run(const std::string& args) {
    return ecmoe::cli_test::run_ecmoe(args, *dir_ / "stderr.txt");
  }
  static std::string checkpoint() { return dir("dec/checkpoint.safetensors"); }
  static nlohmann::json eval_json(const std::string& args) {
    const CliRun r = run("eval --checkpoint " + checkpoint() + " --json " + args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.out << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
  void expect_error(const std::string& args, const std::string& fragment) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.err, fragment)) << "expected '" << fragment << "' in: " << r.err;
    const std::size_t at = r.err.rfind("ecmoe: error: ");
    ASSERT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n', at), r.err.size() - 1) << "not one line: " << r.err;
  }

 private:
  static std::unique_ptr<TempDir> dir_;
};

std::unique_ptr<TempDir> EvalTextCli::dir_;

}  // namespace

TEST_F(EvalTextCli, TextEqualsThePreparedFolderWithTheSameTokenizer) {
  // Documents of ~2 KB: several per file.
  const std::string files = dir("ood/x.txt") + " " + dir("ood/y.txt") + " --doc-bytes 2000";
  const nlohmann::json text = eval_json("--text " + files);
  ASSERT_TRUE(text.is_object());
  EXPECT_EQ(text["split"], "text");
  EXPECT_GT(text["documents"].get<int>(), 4);  // the files are cut into documents
  EXPECT_GT(text["perplexity"].get<double>(), 1.0);

  // The same text prepared with the checkpoint's tokenizer (given as the checkpoint), everything
  // in validation: eval --data accepts the folder and gives the same figures, with as many
  // batches (--text covers every token by default; --batches beyond that is capped to it).
  const CliRun prepare = run("prepare --input " + files + " --out " + dir("ood-data") +
                             " --val-fraction 1 --tokenizer " + checkpoint());
  ASSERT_EQ(prepare.status, 0) << prepare.out << prepare.err;
  const nlohmann::json data = eval_json("--data " + dir("ood-data") + " --batches 100000");
  ASSERT_TRUE(data.is_object());
  EXPECT_EQ(data["batches"], text["batches"]);
  EXPECT_EQ(data["loss"].get<double>(), text["loss"].get<double>());
  EXPECT_EQ(data["perplexity"].get<double>(), text["perplexity"].get<double>());
  EXPECT_EQ(data["moe_layers"], text["moe_layers"]);

  // The same number of batches given to both: still equal.
  const nlohmann::json text2 = eval_json("--text " + files + " --batches 2 --batch-size 3");
  const nlohmann::json data2 =
      eval_json("--data " + dir("ood-data") + " --batches 2 --batch-size 3");
  EXPECT_EQ(text2["loss"].get<double>(), data2["loss"].get<double>());

  // A folder made with another tokenizer (trained on this text) is refused: the check passes iff
  // the tokenizer is the same.
  const CliRun other = run("prepare --input " + files + " --out " + dir("other-data") +
                           " --vocab-size 320 --val-fraction 0.5");
  ASSERT_EQ(other.status, 0) << other.out << other.err;
  expect_error("eval --checkpoint " + checkpoint() + " --data " + dir("other-data"),
               "was trained on data with tokenizer");
}

TEST_F(EvalTextCli, TextReportAndErrors) {
  const CliRun report = run("eval --checkpoint " + checkpoint() + " --text " + dir("ood/y.txt"));
  ASSERT_EQ(report.status, 0) << report.out << report.err;
  EXPECT_TRUE(contains(report.out, "text of 1 input (")) << report.out;
  EXPECT_TRUE(contains(report.out, "perplexity")) << report.out;

  const std::string eval = "eval --checkpoint " + checkpoint();
  expect_error(eval + " --text " + dir("ood/missing.txt"),
               "input " + dir("ood/missing.txt") + " does not exist");
  ecmoe::train_test::write_text(dir("blank.txt"), " \n\n\t\n");
  expect_error(eval + " --text " + dir("blank.txt"), "--text: the files hold no text");
  ecmoe::train_test::write_text(dir("short.txt"), "the sea.\n");
  expect_error(eval + " --text " + dir("short.txt"), "fewer than one window");
  expect_error(eval + " --text " + dir("ood/y.txt") + " --data " + dir("data"), "excludes");
  expect_error(eval + " --text " + dir("ood/y.txt") + " --tokenizer " + dir("ood/x.txt"),
               "is not the one checkpoint");
}

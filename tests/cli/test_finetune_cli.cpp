// `ecmoe finetune` through the real binary: prepare + train a tiny encoder, fine-tune it on an
// SST-2-layout task the test writes (JSON result, result.json), and one-line errors for bad TSVs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"

using ecmoe::train_test::TempDir;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::run_ecmoe;

// SST-2 layout; label 1 iff the sentence names a sea word.
std::string sst2_file(int rows, uint64_t seed) {
  static const char* land[] = {"the", "quick", "brown", "fox", "king", "house", "city", "law"};
  static const char* sea[] = {"whale", "ship", "sea", "captain"};
  const ecmoe::Rng rng(seed, 0);
  uint64_t k = 0;
  std::string text = "sentence\tlabel\n";
  for (int i = 0; i < rows; ++i) {
    const bool positive = rng.below(k++, 2) == 1;
    const int words = 5 + int(rng.below(k++, 4));
    const int at = int(rng.below(k++, uint64_t(words)));
    for (int w = 0; w < words; ++w)
      text += std::string(w ? " " : "") +
              (positive && w == at ? sea[rng.below(k++, 4)] : land[rng.below(k++, 8)]);
    text += std::string(" .\t") + (positive ? "1" : "0") + "\n";
  }
  return text;
}

TEST(FinetuneCli, TrainsOnGlueLayoutAndReportsErrorsWithFileAndLine) {
  ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY));
  TempDir dir("ft-cli");
  const auto run = [&](const std::string& args) { return run_ecmoe(args, dir / "stderr.txt"); };
  ASSERT_EQ(ecmoe::cli_test::pretrain_tiny_encoder(dir, 10), "");
  ecmoe::train_test::write_text(dir / "sst/train.tsv", sst2_file(400, 1));
  ecmoe::train_test::write_text(dir / "sst/dev.tsv", sst2_file(100, 2));
  const std::string ckpt = " --checkpoint " + (dir / "pre/checkpoint.safetensors");
  const CliRun ft = run("finetune" + ckpt + " --task glue:sst2:" + (dir / "sst") +
                        " --seed 4 --set steps=60 --set peak_lr=0.003 --set patience=0 --json"
                        " --device cpu --out " +
                        (dir / "ft"));
  ASSERT_EQ(ft.status, 0) << ft.err;
  const auto j = nlohmann::json::parse(ft.out);
  EXPECT_EQ(j["task"], "glue:sst2");
  EXPECT_EQ(j["steps"], 60);
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["examples"]["test"], 100);
  EXPECT_GT(j["test"]["accuracy"].get<double>(), j["majority_baseline"]["accuracy"].get<double>());
  EXPECT_TRUE(std::filesystem::exists(dir / "ft/result.json"));
  EXPECT_EQ(nlohmann::json::parse(ecmoe::train_test::read_text(dir / "ft/config.json"))["seed"], 4);

  ecmoe::train_test::write_text(dir / "bad/train.tsv", "sentence\tlabel\nfine\t1\nbroken\n");
  ecmoe::train_test::write_text(dir / "bad/dev.tsv", "sentence\tlabel\nfine\t1\n");
  const CliRun bad = run("finetune" + ckpt + " --task glue:sst2:" + (dir / "bad"));
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("bad/train.tsv:3: 1 columns, expected 2"), std::string::npos) << bad.err;
  const CliRun key = run("finetune" + ckpt + " --task polarity --set learning_rate=1");
  EXPECT_EQ(key.status, 1);
  EXPECT_NE(key.err.find("learning_rate"), std::string::npos) << key.err;
}

// --device: cuda in a build without the CUDA backend is a one-line error before anything is
// written, for finetune and predict alike; an unknown device is a usage error.
TEST(FinetuneCli, DeviceCudaNeedsTheCudaBuild) {
  TempDir dir("ft-cli-device");
  const auto run = [&](const std::string& args) { return run_ecmoe(args, dir / "stderr.txt"); };
  ecmoe::train_test::write_text(dir / "sst/train.tsv", sst2_file(40, 1));
  const std::string ckpt = " --checkpoint " + (dir / "none.safetensors");
  const CliRun unknown =
      run("finetune" + ckpt + " --task glue:sst2:" + (dir / "sst") + " --device gpu");
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("--device"), std::string::npos) << unknown.err;
#ifndef ECMOE_HAVE_CUDA
  const char* message = "--device cuda: this ecmoe was built without the CUDA backend";
  const CliRun ft = run("finetune" + ckpt + " --task glue:sst2:" + (dir / "sst") +
                        " --device cuda --out " + (dir / "on-gpu"));
  EXPECT_EQ(ft.status, 1);
  EXPECT_NE(ft.err.find(message), std::string::npos) << ft.err;
  EXPECT_EQ(ft.err.find('\n'), ft.err.size() - 1) << ft.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "on-gpu"));
  const CliRun predict =
      run("predict --checkpoint " + (dir / "none.safetensors") + " --text whale --device cuda");
  EXPECT_EQ(predict.status, 1);
  EXPECT_NE(predict.err.find(message), std::string::npos) << predict.err;
#endif
}

}  // namespace

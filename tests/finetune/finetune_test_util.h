// Helpers shared by the fine-tuning tests (and tests/cuda's): a synthetic but learnable task (does
// the sentence mention the sea?) and a tiny encoder pre-trained on the data tests' sample text,
// with a real tokenizer; saved classifiers compared byte for byte.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../train/train_test_util.h"
#include "core/rng.h"
#include "data/prepare.h"
#include "finetune/finetune.h"
#include "finetune/task_data.h"
#include "io/safetensors.h"
#include "train/train_device.h"
#include "train/trainer.h"

namespace ecmoe::finetune::test {

// Sentences from the data tests' vocabulary; label 1 iff one of the sea words occurs. Split 150
// test, 100 dev, the rest train.
inline TaskData sea_task(int n, uint64_t seed) {
  static const std::vector<std::string> land = {"the",  "quick", "brown", "fox",   "jumps", "over",
                                                "lazy", "dog",   "king",  "house", "city",  "law"};
  static const std::vector<std::string> sea = {"whale", "ship", "sea", "captain", "water"};
  const Rng rng(seed, 0);
  uint64_t k = 0;
  std::vector<Example> pool;
  for (int i = 0; i < n; ++i) {
    const int label = rng.below(k++, 10) < 4 ? 1 : 0;  // 40% positive: majority baseline ~0.6
    const int words = 5 + int(rng.below(k++, 5));
    const int sea_at = label ? int(rng.below(k++, uint64_t(words))) : -1;
    std::string text;
    for (int w = 0; w < words; ++w) {
      if (w) text += ' ';
      text += w == sea_at ? sea[rng.below(k++, sea.size())] : land[rng.below(k++, land.size())];
    }
    pool.push_back({text + ".", "", label});
  }
  TaskData task;
  task.name = "sea";
  task.labels = {"land", "sea"};
  split_examples(std::move(pool), {150, 100, 0, 5}, task);
  return task;
}

// Prepares <dir>/data (a tokenizer of 320 pieces trained on sample text) once.
inline void prepare_sample_data(const std::string& dir) {
  for (int i = 0; i < 6; ++i)
    data::test::write_text(dir + "/in/part" + std::to_string(i) + ".txt",
                           data::test::sample_text(200 + i, 80));
  data::PrepareConfig prep;
  prep.inputs = {dir + "/in"};
  prep.out_dir = dir + "/data";
  prep.vocab_size = 320;
  prep.val_fraction = 0.2;
  data::prepare(prep);
}

// The tiny encoder (train_test::tiny_config, with `router`) pre-trained 30 steps on <dir>/data
// into <dir>/<name>; returns its checkpoint. init_std: as the model's config (larger keeps router
// scores apart, so that no routing decision flips between devices).
inline std::string pretrain_tiny(const std::string& dir, const std::string& name,
                                 RouterKind router = RouterKind::kExpertChoice,
                                 float init_std = 0.02f) {
  TrainConfig c = train_test::tiny_config(dir + "/data", dir + "/" + name);
  c.model.moe = default_moe_config(router);
  c.model.moe.n_experts = 4;
  c.model.init_std = init_std;
  c.steps = 30;
  c.checkpoint_interval = 0;
  c.eval.interval = 0;
  return train_test::train_quietly(c).checkpoint;
}

// The options of a run that prints nothing, on `device` (nullptr: the host).
inline FinetuneOptions quiet(const TrainDevice* device = nullptr) {
  return {.progress = nullptr, .warnings = nullptr, .device = device};
}

// Two saved classifiers hold the same tensors, byte for byte.
inline void expect_same_models(const std::string& a, const std::string& b) {
  const auto ta = SafetensorsFile::open(a);
  const auto tb = SafetensorsFile::open(b);
  ASSERT_EQ(ta.names(), tb.names());
  for (const auto& name : ta.names()) {
    const auto x = ta.bytes(name), y = tb.bytes(name);
    ASSERT_EQ(x.size(), y.size()) << name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
  }
}

}  // namespace ecmoe::finetune::test

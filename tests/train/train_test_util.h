// Helpers shared by the training tests (and tests/cli): a prepared data folder written directly
// (token shards + manifest, no tokenizer training), a tiny config, metrics reading; the scratch
// folder and file helpers are the data tests'.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../data/test_util.h"
#include "../model/checked_backend.h"
#include "core/rng.h"
#include "data/checksum.h"
#include "data/manifest.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"
#include "io/safetensors.h"
#include "optim/optimizer_device.h"
#include "train/train_config.h"
#include "train/train_device.h"
#include "train/trainer.h"

namespace ecmoe::train_test {

using data::test::read_text;
using data::test::TempDir;
using data::test::write_text;

// A stream with structure a model can learn: "sentences" of 4-12 tokens, each token mostly the
// previous one plus a small step (mod the ordinary range), each followed by EOS.
inline std::vector<int32_t> pattern_tokens(int64_t count, int vocab, uint64_t seed) {
  const Rng rng(seed, 0);
  std::vector<int32_t> tokens;
  uint64_t k = 0;
  const int ordinary = vocab - data::kFirstOrdinaryId;
  while (int64_t(tokens.size()) < count) {
    const int length = 4 + int(rng.below(k++, 9));
    int id = int(rng.below(k++, uint64_t(ordinary)));
    for (int i = 0; i < length && int64_t(tokens.size()) < count; ++i) {
      tokens.push_back(data::kFirstOrdinaryId + id);
      id = (id + 1 + int(rng.below(k++, 3))) % ordinary;
    }
    if (int64_t(tokens.size()) < count) tokens.push_back(data::kEosId);
  }
  return tokens;
}

// Writes <dir>/{train.bin, val.bin, tokenizer.model, manifest.json} as `ecmoe prepare` would,
// with a placeholder tokenizer file (training reads only its checksum).
inline void write_data_folder(const std::string& dir, int vocab, int64_t train_tokens,
                              int64_t val_tokens, uint64_t seed = 7) {
  std::filesystem::create_directories(dir);
  data::Manifest m;
  m.corpus = "test-pattern";
  m.source_id = "pattern-" + std::to_string(seed);
  m.settings.vocab_size = vocab;
  m.vocab_size = vocab;
  m.dtype = data::dtype_for_vocab(vocab);
  const std::string tokenizer =
      "placeholder tokenizer " + std::to_string(vocab) + " " + std::to_string(seed);
  std::ofstream(dir + "/tokenizer.model", std::ios::binary) << tokenizer;
  m.tokenizer = {"tokenizer.model", int64_t(tokenizer.size()), data::fnv1a64(tokenizer)};
  for (const auto& [split, count, s] :
       {std::tuple{"train", train_tokens, seed}, std::tuple{"val", val_tokens, seed + 1}}) {
    data::TokenStream stream;
    stream.tokens = pattern_tokens(count, vocab, s);
    stream.documents = 1;
    m.splits[split] = data::write_shard(dir, std::string(split) + ".bin", stream, m.dtype);
  }
  data::write_manifest(dir, m);
}

// configs/tiny.json's model, small enough that a step takes milliseconds.
inline TrainConfig tiny_config(const std::string& data_dir, const std::string& out) {
  TrainConfig c;
  c.model.kind = ModelKind::kEncoder;
  c.model.vocab_size = 0;
  c.model.seq_len = 16;
  c.model.d_model = 16;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.d_ff = 32;
  c.model.moe.n_experts = 4;
  c.data.dir = data_dir;
  c.schedule.peak_lr = 3e-3f;
  c.schedule.warmup_steps = 2;
  c.steps = 6;
  c.batch_size = 4;
  c.eval.interval = 2;
  c.eval.batches = 2;
  c.checkpoint_interval = 2;
  c.log_interval = 1;
  c.out = out;
  return c;
}

// The "train" lines of a metrics file.
inline std::vector<nlohmann::json> train_lines(const std::string& metrics_path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "train") lines.push_back(j);
  }
  return lines;
}

// train() with its progress lines thrown away (device: where it trains; nullptr: the host).
inline TrainResult train_quietly(const TrainConfig& config, bool resume = false,
                                 const TrainDevice* device = nullptr) {
  std::FILE* sink = std::fopen("/dev/null", "w");
  TrainOptions options{.resume = resume, .terminal = false, .progress = sink};
  options.device = device;
  try {
    TrainResult r = train(config, options);
    std::fclose(sink);
    return r;
  } catch (...) {
    std::fclose(sink);
    throw;
  }
}

// The checkpoints of two run folders hold the same tensors, byte for byte.
inline void expect_same_checkpoints(const std::string& a, const std::string& b) {
  const auto ta = SafetensorsFile::open(a + "/checkpoint.safetensors");
  const auto tb = SafetensorsFile::open(b + "/checkpoint.safetensors");
  ASSERT_EQ(ta.names(), tb.names());
  for (const auto& name : ta.names()) {
    const auto x = ta.bytes(name), y = tb.bytes(name);
    ASSERT_EQ(x.size(), y.size()) << name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
  }
}

// The host optimizer device whose parameters and gradients are device memory of a
// CheckedBackend while it lives.
class CheckedOptimizerDevice final : public OptimizerDevice {
 public:
  CheckedOptimizerDevice(const TensorTable& table, const AdamWConfig& config,
                         ecmoe::testing::CheckedBackend& be)
      : inner_(make_host_optimizer_device(table, config)), be_(be) {
    const std::size_t bytes = std::size_t(table.total_floats()) * sizeof(float);
    be_.adopt(inner_->params(), bytes);
    be_.adopt(inner_->grads(), bytes);
  }
  ~CheckedOptimizerDevice() override {
    be_.forget(inner_->params());
    be_.forget(inner_->grads());
  }
  void load(const FlatBuffer& params, const AdamW& adam) override { inner_->load(params, adam); }
  void store(FlatBuffer& params, AdamW& adam) override { inner_->store(params, adam); }
  void store_grads(FlatBuffer& grads) override { inner_->store_grads(grads); }
  float* params() override { return inner_->params(); }
  float* grads() override { return inner_->grads(); }
  void zero_grads() override { inner_->zero_grads(); }
  void start_clip_grad_norm(float max_norm) override { inner_->start_clip_grad_norm(max_norm); }
  float finish_clip_grad_norm() override { return inner_->finish_clip_grad_norm(); }
  double grad_sum_of_squares() override { return inner_->grad_sum_of_squares(); }
  void scale_grads(float scale) override { inner_->scale_grads(scale); }
  void adamw_step(float lr) override { inner_->adamw_step(lr); }
  void wait() override { inner_->wait(); }

 private:
  std::unique_ptr<OptimizerDevice> inner_;
  ecmoe::testing::CheckedBackend& be_;
};

// The host device with its memory told apart (model/checked_backend.h): every pointer a step, an
// evaluation and a checkpoint give the dense ops is checked to be the device's (the backend's
// allocations and the optimizer's buffers).
inline TrainDevice checked_train_device(ecmoe::testing::CheckedBackend& be) {
  TrainDevice d = host_train_device();
  d.name = "checked";
  d.nn = &be;
  d.optimizer = [&be](const TensorTable& table, const AdamWConfig& config) {
    return std::make_unique<CheckedOptimizerDevice>(table, config, be);
  };
  return d;
}

}  // namespace ecmoe::train_test

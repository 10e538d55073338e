// Parity of the C++ transformer with an independent PyTorch implementation (tools/torch_model.py,
// fixtures by tools/make_model_fixtures.py, float64 math stored as float32). For every fixture:
// the tensor names and shapes of the table, the loss, the LM loss, the auxiliary losses, every
// layer's expert loads, and every parameter's gradient. The fixtures avoid near-ties in every
// routing decision, so both sides route identically; the numbers differ only by rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "io/safetensors.h"
#include "model/transformer.h"

using namespace ecmoe;

namespace {

// Tolerances. A gradient tensor passes when max |got − ref| <= kGradTol · max |ref| (the worst
// element against the tensor's scale; a tensor whose reference is all zeros must be within
// kGradTol · the largest gradient of the model). Measured on these fixtures, float32 against
// float64: at most 6e-6 of the tensor's scale (LayerNorm gains of the first layer, whose gradient
// sums many cancelling terms; most tensors 1e-6), deeper than the MoE layer alone (3e-7). 3e-5
// leaves 5x for other kernels and summation orders, while a real error (a missing bias, a wrong
// mask, an aux term left out) shows at 1e-2 or more.
constexpr double kGradTol = 3e-5;
// Losses are O(4); float32 rounding: measured <= 5e-8 relative.
constexpr double kLossTol = 1e-5;

std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  std::error_code ec;
  const std::string dir = std::string(ECMOE_FIXTURE_DIR) + "/model";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

const std::string& meta(const SafetensorsFile& f, const std::string& key) {
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end()) throw std::runtime_error(f.path() + ": no metadata " + key);
  return it->second;
}
int meta_int(const SafetensorsFile& f, const std::string& key) { return std::stoi(meta(f, key)); }
float meta_float(const SafetensorsFile& f, const std::string& key) {
  return std::stof(meta(f, key));
}

ModelConfig config_from(const SafetensorsFile& f) {
  ModelConfig c;
  c.kind = parse_model_kind(meta(f, "kind"));
  c.vocab_size = meta_int(f, "vocab_size");
  c.seq_len = meta_int(f, "seq_len");
  c.d_model = meta_int(f, "d_model");
  c.n_layers = meta_int(f, "n_layers");
  c.n_heads = meta_int(f, "n_heads");
  c.d_ff = meta_int(f, "d_ff");
  c.moe_every = meta_int(f, "moe_every");
  c.moe.router = parse_router_kind(meta(f, "router"));
  c.moe.n_experts = meta_int(f, "n_experts");
  c.moe.capacity_factor_train = meta_float(f, "capacity_factor");
  // Deliberately different: a training forward must use the training factor.
  c.moe.capacity_factor_eval = 2.f * c.moe.capacity_factor_train + 1.f;
  c.moe.group_size = meta_int(f, "group_size");
  c.moe.token_choice_k = meta_int(f, "token_choice_k");
  c.moe.renormalize_gates = meta(f, "renormalize_gates") == "true";
  c.moe.batch_prioritized = meta(f, "batch_prioritized") == "true";
  c.moe.load_balance_weight = meta_float(f, "load_balance_weight");
  c.moe.z_loss_weight = meta_float(f, "z_loss_weight");
  c.moe.capped.max_experts_per_token = meta_int(f, "max_experts_per_token");
  c.moe.jitter = 0.f;
  return c;
}

float scalar(const SafetensorsFile& f, const std::string& name) {
  float v = 0;
  f.read_f32(name, &v, {1});
  return v;
}

std::vector<int32_t> ints(const SafetensorsFile& f, const std::string& name,
                          const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<int32_t> v(n);
  f.read(name, DType::I32, shape, v.data());
  return v;
}

void check_fixture(const std::string& path) {
  SCOPED_TRACE(path);
  const SafetensorsFile f = SafetensorsFile::open(path);
  const ModelConfig cfg = config_from(f);
  Transformer model(cfg);

  // The table's names and shapes are exactly the fixture's parameters (the PyTorch model's list).
  const std::set<std::string> results = {"loss", "lm_loss", "aux_load_balance", "aux_z_loss",
                                         "aux_total"};
  std::set<std::string> fixture_params;
  for (const TensorInfo& t : f.tensors())
    if (t.dtype == DType::F32 && !t.name.starts_with("grad.") && !results.count(t.name))
      fixture_params.insert(t.name);
  std::set<std::string> table_params;
  for (const TensorSpec& s : model.table().specs()) table_params.insert(s.name);
  EXPECT_EQ(table_params, fixture_params);

  FlatBuffer params(model.table()), grads(model.table());
  for (const TensorSpec& s : model.table().specs()) f.read_f32(s.name, params.get(s.name), s.shape);
  const std::vector<int64_t> bt = f.shape("tokens");
  ASSERT_EQ(bt.size(), 2u);
  Batch batch;
  batch.batch_size = int(bt[0]);
  batch.seq_len = int(bt[1]);
  batch.tokens = ints(f, "tokens", bt);
  batch.targets = ints(f, "targets", bt);
  batch.valid_len = ints(f, "valid_len", {bt[0]});

  const ForwardResult r = model.forward(params, batch, true, 0);
  const double ref_loss = scalar(f, "loss");
  EXPECT_NEAR(r.loss, ref_loss, kLossTol * std::abs(ref_loss));
  EXPECT_NEAR(r.lm_loss, scalar(f, "lm_loss"), kLossTol * std::abs(ref_loss));
  EXPECT_NEAR(r.aux.load_balance, scalar(f, "aux_load_balance"), 1e-5);
  EXPECT_NEAR(r.aux.z_loss, scalar(f, "aux_z_loss"), 1e-5 * std::max(1.f, r.aux.z_loss));
  EXPECT_NEAR(r.aux.weighted_total, scalar(f, "aux_total"), 1e-6);
  ASSERT_EQ(int(r.layer_stats.size()), cfg.n_layers);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string name = "routing." + std::to_string(l) + ".tokens_per_expert";
    const auto want = ints(f, name, f.shape(name));
    const std::vector<int64_t> want64(want.begin(), want.end());
    EXPECT_EQ(r.layer_stats[l].tokens_per_expert, want64) << "layer " << l;
  }

  model.backward(params, grads);
  double model_scale = 0;
  for (const TensorSpec& s : model.table().specs()) {
    std::vector<float> ref(s.numel());
    f.read_f32("grad." + s.name, ref.data(), s.shape);
    for (float v : ref) model_scale = std::max(model_scale, double(std::abs(v)));
  }
  double worst_ratio = 0;
  std::string worst_name;
  for (const TensorSpec& s : model.table().specs()) {
    std::vector<float> ref(s.numel());
    f.read_f32("grad." + s.name, ref.data(), s.shape);
    const float* got = grads.get(s.name);
    double scale = 0, worst = 0;
    int64_t where = 0;
    for (int64_t j = 0; j < s.numel(); ++j) {
      scale = std::max(scale, double(std::abs(ref[j])));
      const double diff = std::abs(double(got[j]) - double(ref[j]));
      if (!(diff <= worst)) worst = diff, where = j;  // also catches NaN
    }
    if (scale == 0) scale = model_scale;
    EXPECT_LE(worst, kGradTol * scale) << "grad " << s.name << "[" << where << "]: got "
                                       << got[where] << ", reference " << ref[where];
    if (worst / scale > worst_ratio) worst_ratio = worst / scale, worst_name = s.name;
  }
  std::printf("%s: loss %.7f (ref %.7f), worst gradient error %.2e of scale (%s)\n",
              meta(f, "case").c_str(), r.loss, ref_loss, worst_ratio, worst_name.c_str());
}

TEST(ModelParity, AllFixturesPresent) {
  // encoder and decoder x expert_choice, top1, top2, dense, hash, plus the grouped case
  EXPECT_GE(fixture_files().size(), 11u) << "run /usr/bin/python3 -m tools.make_model_fixtures";
}

TEST(ModelParity, MatchesPyTorch) {
  for (const std::string& path : fixture_files()) check_fixture(path);
}

}  // namespace

#include "train/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "model/lm_head.h"

namespace ecmoe {

// Routing slots of a layer over n tokens: expert choice gives capacity·n (k = capacity·n/e per
// expert), token choice at most choices·n, dense and hash n.
double moe_slot_count(const MoeConfig& c, double n, bool training) {
  const double capacity = training ? c.capacity_factor_train : c.capacity_factor_eval;
  switch (c.router) {
    case RouterKind::kDense:
    case RouterKind::kHash:
      return n;
    case RouterKind::kTop1:
    case RouterKind::kTop2:
      return std::min(double(c.choices_per_token()), std::max(1.0, capacity)) * n;
    default:
      return std::max(1.0, capacity * n);
  }
}

namespace {

constexpr double kFloat = 4, kInt = 4, kBf16 = 2;

// A tensor's floats in a flat buffer: rounded up to 16 (64-byte alignment, tensor_table.h).
double padded(double floats) { return std::ceil(floats / 16) * 16; }

double moe_parameter_floats(const MoeConfig& c) {
  const double d = c.d_model, f = c.d_ff, e = c.expert_count();
  double floats = 2 * padded(e * d * f);
  if (router_has_weights(c.router)) floats += padded(d * e);
  return floats;
}

// Bytes one MoeLayer holds after a forward (and, with backward, a backward) over n tokens.
double moe_activation_bytes(const MoeConfig& c, double n, bool training, bool backward) {
  const double d = c.d_model, f = c.d_ff, e = c.expert_count();
  const double S = moe_slot_count(c, n, training);
  const bool bf16 = c.precision == Precision::kBf16;
  double floats = 0, ints = 0, halves = 0;
  if (router_has_weights(c.router)) {
    floats += 2 * n * e;                                // logits, probs
    if (training && c.jitter > 0) floats += 2 * n * d;  // router_input, noise
    if (backward) floats += 2 * n * e + n * d;          // dprobs, dlogits, dx_router
  }
  floats += S;                        // plan: slot gates
  ints += 2 * S + (e + 1) + (n + 1);  // plan: slot tokens, token slots, offsets
  floats += S * (d + f);              // out [S, d]; pre [S, f] (GELU keeps no CDF)
  // x_in [S, d] and hidden [S, f]: fp32, or under bf16 kept in bf16 only, with the bf16 copies
  // of w1 and w2 (expert_ffn.h).
  if (bf16)
    halves += S * (d + f) + 2 * e * d * f;
  else
    floats += S * (d + f);
  if (backward) {
    floats += S * (d + f) + S;        // grad_d, grad_f, dgate
    if (bf16) halves += S * (d + f);  // grad_d16, grad_f16
  }
  return floats * kFloat + halves * kBf16 + ints * kInt;
}

struct ModelSizes {
  double parameter_floats = 0;
  double state_floats = 0;
};

ModelSizes model_sizes(const ModelConfig& m) {
  const double V = m.vocab_size, T = m.seq_len, d = m.d_model, L = m.n_layers;
  const double moe_layers = m.moe_every > 0 ? std::floor(L / m.moe_every) : 0;
  MoeConfig moe = m.ffn_config(m.moe_every > 0 ? m.moe_every - 1 : 0);
  MoeConfig dense = m.ffn_config(0);
  if (m.moe_every == 1) dense = moe;
  moe.d_model = dense.d_model = m.d_model;
  ModelSizes s;
  const double attention = 5 * padded(d) + padded(3 * d * d) + padded(3 * d) + padded(d * d);
  s.parameter_floats = padded(V * d) + padded(T * d) + L * attention + 2 * padded(d) +
                       moe_layers * moe_parameter_floats(moe) +
                       (L - moe_layers) * moe_parameter_floats(dense);
  if (moe_layers > 0 && router_has_cutoffs(m.moe.router))
    s.state_floats = moe_layers * padded(m.moe.n_experts);
  return s;
}

// Rows the LM head holds room for over n tokens: a decoder all; a masked LM the room its buffers
// start with for mask_prob of them (model/lm_head.h).
double counted_rows(const TrainConfig& config, double n) {
  if (config.model.kind == ModelKind::kDecoder) return n;
  const double mean = std::min(n, std::ceil(config.data.mask_prob * n));
  return double(lm_head_room_rows(int64_t(mean), int64_t(n)));
}

// The CUDA backend's scratch over batch sequences, one set shared by the layers: bf16 copies of
// the probabilities [B, H, T, T] and of qkv; per layer, the bf16 copies of the two projections'
// inputs [N, d] that their backward reads (nn::Backend's linear `saved`); in the backward the score
// gradients of a slice of max(B, H) (sequence, head) pairs in fp32 (and bf16), the bf16 copies of
// the attention's output gradient and of the logits' gradient [M, V]; a fixed 64 MB for
// cuBLAS's workspaces and the small partial sums; and each MoE layer's routing scratch (expert
// choice's transposed scores [N, e]; capped expert choice's solver and sort, cuda/
// route_expert_choice_capped.h: the scores, rows, columns and A in fp32, two 64-bit keys and two
// indices a pair, the sort's temporary about a key and an index a pair, and the tokens'
// potentials).
double device_scratch_bytes(const TrainConfig& config, double batch, bool backward) {
  const ModelConfig& m = config.model;
  const double T = m.seq_len, d = m.d_model, H = m.n_heads, V = m.vocab_size, L = m.n_layers;
  const double N = batch * T;
  const bool bf16 = m.precision == Precision::kBf16;
  double bytes = 64e6;
  const double moe_layers = m.moe_every > 0 ? std::floor(L / m.moe_every) : 0;
  const double e = m.moe.n_experts;
  if (m.moe.router == RouterKind::kExpertChoice)
    bytes += moe_layers * N * e * kFloat;
  else if (m.moe.router == RouterKind::kExpertChoiceCapped)
    bytes += moe_layers * (N * e * (4 * kFloat + 2 * 8 + 2 * kInt + 8 + kInt) + N * 8);
  if (bf16) bytes += batch * H * T * T * kBf16 + N * 3 * d * kBf16 + L * 2 * N * d * kBf16;
  if (backward) {
    bytes += std::max(batch, H) * T * T * (kFloat + (bf16 ? kBf16 : 0));
    if (bf16) bytes += N * d * kBf16 + counted_rows(config, N) * V * kBf16;
  }
  return bytes;
}

// Bytes the Transformer's own buffers and its layers hold over batch sequences. Attention's saved
// state is counted as the probabilities [batch, H, T, T], and the LayerNorm's output and qkv in
// fp32: an over-estimate for a backend that saves less (CUDA's flash attention keeps the rows'
// logsumexp, [batch, H, T], and a bf16 qkv, and neither fp32 form: nn::Backend's
// attention_ln_floats and attention_qkv_floats).
double model_activation_bytes(const TrainConfig& config, double batch, bool training,
                              bool backward) {
  const ModelConfig& m = config.model;
  const double T = m.seq_len, d = m.d_model, L = m.n_layers, H = m.n_heads, V = m.vocab_size;
  const double N = batch * T;
  double floats = 0;
  floats += (2 * L + 1) * N * d;                          // residual stream
  floats += L * (5 * N * d + 2 * N + batch * H * T * T);  // attention: ln, qkv, att, probs
  floats += L * (N * d + 2 * N);                          // ln2 out, mean, rstd
  floats += N * d + 2 * N;                                // final LayerNorm
  // LM head over the counted positions: masked LM counts mask_prob of them (the gather and its
  // gradient only then), a decoder all.
  const bool decoder = m.kind == ModelKind::kDecoder;
  const double M = counted_rows(config, N);
  floats += M * V + M + (decoder ? 0 : M * d);
  if (backward)
    floats += (decoder ? 0 : M * d) + 2 * N * d + 4 * N * d;  // d_gathered, d_stream,
                                                              // d_tmp, attention scratch
  double bytes = floats * kFloat + (N + 2 * M) * kInt;        // tokens, head rows and targets
  const double moe_layers = m.moe_every > 0 ? std::floor(L / m.moe_every) : 0;
  const MoeConfig moe = m.ffn_config(m.moe_every > 0 ? m.moe_every - 1 : 0);
  const MoeConfig dense = m.moe_every == 1 ? moe : m.ffn_config(0);
  bytes += moe_layers * moe_activation_bytes(moe, N, training, backward) +
           (L - moe_layers) * moe_activation_bytes(dense, N, training, backward);
  return bytes;
}

std::string number(double x) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.10g", x);
  return text;
}

// The keys that size memory, each with its value and a way to put back its default.
struct SizeKey {
  const char* name;
  std::function<double(const TrainConfig&)> get;
  std::function<void(TrainConfig&, const TrainConfig&)> reset;
};

const std::vector<SizeKey>& size_keys() {
#define ECMOE_SIZE_KEY(key, field)                                      \
  SizeKey {                                                             \
    key, [](const TrainConfig& c) { return double(c.field); },          \
        [](TrainConfig& c, const TrainConfig& d) { c.field = d.field; } \
  }
  static const std::vector<SizeKey> keys = {
      ECMOE_SIZE_KEY("batch_size", batch_size),
      ECMOE_SIZE_KEY("eval.batch_size", eval.batch_size),
      ECMOE_SIZE_KEY("model.seq_len", model.seq_len),
      ECMOE_SIZE_KEY("model.d_model", model.d_model),
      ECMOE_SIZE_KEY("model.d_ff", model.d_ff),
      ECMOE_SIZE_KEY("model.n_layers", model.n_layers),
      ECMOE_SIZE_KEY("model.n_heads", model.n_heads),
      ECMOE_SIZE_KEY("model.vocab_size", model.vocab_size),
      ECMOE_SIZE_KEY("model.moe.n_experts", model.moe.n_experts),
      ECMOE_SIZE_KEY("model.moe.capacity_factor_train", model.moe.capacity_factor_train),
      ECMOE_SIZE_KEY("model.moe.capacity_factor_eval", model.moe.capacity_factor_eval),
  };
#undef ECMOE_SIZE_KEY
  return keys;
}

std::string parts_text(const MemoryEstimate& e) {
  std::string s = "parameters " + format_bytes(e.parameters);
  if (e.gradients > 0) s += ", gradients " + format_bytes(e.gradients);
  if (e.optimizer > 0) s += ", AdamW moments " + format_bytes(e.optimizer);
  s += ", activations " + format_bytes(e.activations);
  if (e.device_scratch > 0) s += ", GPU scratch " + format_bytes(e.device_scratch);
  return s;
}

// ", or keep the batch with grad_accum=A (micro-batches of M sequences)" for the fewest
// micro-batches that fit, if any does.
std::string accumulation_hint(const TrainConfig& config, double available, bool on_device) {
  const int64_t batch = config.batch_size;
  std::vector<int64_t> divisors;
  for (int64_t i = 1; i * i <= batch; ++i)
    if (batch % i == 0) divisors.insert(divisors.end(), {i, batch / i});
  std::sort(divisors.begin(), divisors.end());
  TrainConfig changed = config;
  for (const int64_t a : divisors) {
    if (a <= config.grad_accum) continue;
    changed.grad_accum = int(a);
    if (estimate_memory(changed, true, on_device).total() <= available)
      return ", or keep the batch with grad_accum=" + std::to_string(a) + " (micro-batches of " +
             std::to_string(config.batch_size / a) + " sequences)";
  }
  return "";
}

}  // namespace

MemoryEstimate estimate_memory(const TrainConfig& config, bool training, bool on_device) {
  const ModelSizes sizes = model_sizes(config.model);
  MemoryEstimate e;
  e.parameters = (sizes.parameter_floats + sizes.state_floats) * kFloat;
  const double eval_batch = config.eval_batch_size();
  if (!training) {
    e.activations = model_activation_bytes(config, eval_batch, false, false);
    if (on_device) e.device_scratch = device_scratch_bytes(config, eval_batch, false);
    return e;
  }
  e.gradients = sizes.parameter_floats * kFloat;
  e.optimizer = 2 * sizes.parameter_floats * kFloat;
  // The model's buffers grow to the larger of a training micro-batch (the whole batch without
  // gradient accumulation) and an evaluation forward.
  const bool evaluates = config.eval.batches > 0;
  const double micro_batch = config.micro_batch_size();
  e.activations =
      std::max(model_activation_bytes(config, micro_batch, true, true),
               evaluates ? model_activation_bytes(config, eval_batch, false, false) : 0.0);
  if (on_device)
    e.device_scratch = std::max(device_scratch_bytes(config, micro_batch, true),
                                evaluates ? device_scratch_bytes(config, eval_batch, false) : 0.0);
  return e;
}

MemoryEstimate estimate_moe_layer_memory(const MoeConfig& config, double n_tokens) {
  MemoryEstimate e;
  e.parameters = moe_parameter_floats(config) * kFloat;
  e.gradients = e.parameters;
  // x, dy, y, dx [n, d] and the token ids, then the layer's own buffers.
  e.activations = 4 * n_tokens * config.d_model * kFloat + n_tokens * kInt +
                  moe_activation_bytes(config, n_tokens, true, true);
  return e;
}

double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return double(pages) * double(page);
  return INFINITY;  // unknown: do not refuse
}

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  char text[32];
  if (bytes >= 999.5e15) {  // beyond petabytes: powers of ten
    std::snprintf(text, sizeof(text), "%.2g B", bytes);
    return text;
  }
  int u = 0;
  while (u < 5 && bytes >= 999.5) bytes /= 1000, ++u;
  std::snprintf(text, sizeof(text), bytes < 10 && u > 0 ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return text;
}

void check_memory(const TrainConfig& config, bool training,
                  const std::vector<std::pair<std::string, std::string>>& key_names,
                  const DeviceMemory* device) {
  const bool on_device = device != nullptr;
  const MemoryEstimate e = estimate_memory(config, training, on_device);
  const double available = device ? device->bytes : available_memory_bytes();
  if (e.total() <= available) return;
  // The keys whose default alone would make it fit; if none, the two that reduce it most.
  const TrainConfig defaults;
  std::vector<std::pair<double, const SizeKey*>> effects;
  for (const SizeKey& key : size_keys()) {
    if (key.get(config) == key.get(defaults)) continue;
    TrainConfig changed = config;
    key.reset(changed, defaults);
    effects.emplace_back(estimate_memory(changed, training, on_device).total(), &key);
  }
  std::sort(effects.begin(), effects.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const SizeKey*> named;
  for (const auto& [total, key] : effects)
    if (total <= available) named.push_back(key);
  for (std::size_t i = 0; named.empty() && i < effects.size() && i < 2; ++i)
    if (effects[i].first < e.total()) named.push_back(effects[i].second);
  std::string keys;
  for (const SizeKey* key : named) {
    std::string name = key->name;
    for (const auto& [from, to] : key_names)
      if (from == name) name = to;
    keys += (keys.empty() ? "" : ", ") + name + "=" + number(key->get(config));
  }
  fail(keys.empty() ? std::string("this config") : keys, " needs ", format_bytes(e.total()), " of ",
       device ? device->name : std::string("memory"), " (", parts_text(e), "), more than the ",
       format_bytes(available), " available; lower ", named.size() > 1 ? "them" : "it",
       training ? accumulation_hint(config, available, on_device) : std::string());
}

void check_eval_memory(const TrainConfig& config, int batch_size_option,
                       const DeviceMemory* device) {
  TrainConfig sized = config;
  if (batch_size_option > 0) sized.eval.batch_size = batch_size_option;
  check_memory(sized, /*training=*/false,
               {{"eval.batch_size", batch_size_option > 0 ? "--batch-size" : "eval.batch_size"}},
               device);
}

void check_bytes_fit(double bytes, const std::string& what, const std::string& parts,
                     const DeviceMemory* device) {
  const double available = device ? device->bytes : available_memory_bytes();
  ECMOE_CHECK(bytes <= available, what, " needs ", format_bytes(bytes), " of ",
              device ? device->name : std::string("memory"),
              parts.empty() ? std::string() : " (" + parts + ")", ", more than the ",
              format_bytes(available), " available");
}

void check_moe_layer_memory(const MoeConfig& config, double n_tokens, const std::string& what,
                            double device_scratch, const DeviceMemory* device) {
  MemoryEstimate e = estimate_moe_layer_memory(config, n_tokens);
  e.device_scratch = device_scratch;
  check_bytes_fit(e.total(), what, parts_text(e), device);
}

}  // namespace ecmoe

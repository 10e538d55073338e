// tokens, targets are [B, T]; the residual stream h is [N = B·T, d]; logits are [counted, V]
#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "model/attention_block.h"
#include "model/lm_head.h"
#include "moe/cutoffs.h"
#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/grad_write.h"

namespace ecmoe {

static_assert(sizeof(int) == sizeof(int32_t), "token ids are passed to the kernels as int");

struct Transformer::Activations {
  int batch = 0, seq_len = 0;
  // Token ids and key lengths stay on the host too: the MoE layers route by ids there (hash) and
  // the checks read them.
  std::vector<int32_t> tokens;     // [B, T] copied: embedding backward needs them
  std::vector<int32_t> valid_len;  // [B] or empty
  StepShare share;                 // the batch's part of its training step
  // Everything below is in the dense backend's memory.
  nn::Buffer<int> tokens_on_backend, valid_len_on_backend;
  // The residual stream after the embedding and after each of the 2L sublayers:
  // stream[2l] enters layer l, stream[2l + 1] is after its attention, stream[2L] enters final_ln.
  nn::Buffer<float> stream;                     // [2L + 1, N, d]
  std::vector<AttentionBlockActivations> attn;  // [L]
  nn::Buffer<float> ln2_out;                 // [L, N, d]: the FFN input; MoeLayer keeps a pointer
  nn::Buffer<float> ln2_mean, ln2_rstd;      // [L, N]
  nn::Buffer<float> final_out;               // [N, d]
  nn::Buffer<float> final_mean, final_rstd;  // [N]
  LmHead head;
  // Backward temporaries.
  nn::Buffer<float> d_stream;  // [N, d] dL/dh at the current depth
  nn::Buffer<float> d_tmp;     // [N, d] dL/d(final_out) or dL/d(ln2_out)
  AttentionBlockScratch attn_scratch;
  bool backward_ready = false;
  bool lm_head_ready = false;  // the last forward ran the LM head (forward, not forward_hidden)

  int rows() const { return batch * seq_len; }
  const int* valid_len_ptr() const {
    return valid_len.empty() ? nullptr : valid_len_on_backend.data();
  }
};

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Jitter noise stream of layer l: distinct per layer, a pure function of (seed, l).
uint64_t layer_seed(uint64_t seed, int layer) {
  return mix64(seed ^ mix64(streams::kLayerJitter + uint64_t(layer)));
}

void accumulate_aux(AuxLosses& total, const AuxLosses& layer) {
  total.load_balance += layer.load_balance;
  total.z_loss += layer.z_loss;
  total.weighted_total += layer.weighted_total;
}

}  // namespace

std::string Transformer::layer_prefix(int layer) { return "layers." + std::to_string(layer) + "."; }

Transformer::Transformer(const ModelConfig& config, const dist::Comm* comm)
    : config_(config), act_(std::make_unique<Activations>()) {
  config_.validate();
  const int64_t V = config_.vocab_size, T = config_.seq_len, d = config_.d_model;
  auto offset = [&](int index) { return table_.specs()[index].offset; };
  offsets_.embed_tokens = offset(table_.add("embed.tokens", {V, d}));
  offsets_.embed_positions = offset(table_.add("embed.positions", {T, d}));
  for (int l = 0; l < config_.n_layers; ++l) {
    const std::string p = layer_prefix(l);
    LayerOffsets o;
    o.ln1_gain = offset(table_.add(p + "ln1.gain", {d}));
    o.ln1_bias = offset(table_.add(p + "ln1.bias", {d}));
    o.qkv_w = offset(table_.add(p + "attn.qkv.weight", {d, 3 * d}));
    o.qkv_b = offset(table_.add(p + "attn.qkv.bias", {3 * d}));
    o.out_w = offset(table_.add(p + "attn.out.weight", {d, d}));
    o.out_b = offset(table_.add(p + "attn.out.bias", {d}));
    o.ln2_gain = offset(table_.add(p + "ln2.gain", {d}));
    o.ln2_bias = offset(table_.add(p + "ln2.bias", {d}));
    const MoeConfig ffn = config_.ffn_config(l);
    declare_moe_params(table_, p + "ffn.", ffn, expert_shard(ffn, comm));
    if (router_has_weights(ffn.router)) o.router = table_.spec(p + "ffn.router.weight").offset;
    o.w1 = table_.spec(p + "ffn.experts.w1").offset;
    o.w2 = table_.spec(p + "ffn.experts.w2").offset;
    layers_.push_back(o);
    ffn_.emplace_back(ffn);
    ffn_.back().set_comm(comm);
    if (router_has_cutoffs(ffn.router)) state_table_.add(p + "ffn.router.cutoff", {ffn.n_experts});
  }
  offsets_.final_gain = offset(table_.add("final_ln.gain", {d}));
  offsets_.final_bias = offset(table_.add("final_ln.bias", {d}));
}

Transformer::~Transformer() = default;
Transformer::Transformer(Transformer&&) noexcept = default;
Transformer& Transformer::operator=(Transformer&&) noexcept = default;

void Transformer::init_params(FlatBuffer& params, uint64_t seed) const {
  ECMOE_CHECK(params.size() == table_.total_floats(), "init_params: buffer of ", params.size(),
              " floats does not belong to this model (", table_.total_floats(), ")");
  const float residual_scale = 1.f / std::sqrt(2.f * float(config_.n_layers));
  const auto& specs = table_.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    float* v = params.data() + spec.offset;
    const int64_t n = spec.numel();
    if (ends_with(spec.name, ".gain")) {
      std::fill(v, v + n, 1.f);
    } else if (ends_with(spec.name, ".bias")) {
      std::fill(v, v + n, 0.f);
    } else {
      const bool residual_out =
          ends_with(spec.name, "attn.out.weight") || ends_with(spec.name, "ffn.experts.w2");
      const float std = config_.init_std * (residual_out ? residual_scale : 1.f);
      const Rng rng(seed, streams::model_tensor(i));
      // Counter-based draws: element j of the whole tensor gets value j of the stream whichever
      // thread (or rank, for an expert shard) computes it.
      const uint64_t first = uint64_t(spec.shard_offset());
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < n; ++j) v[j] = std * rng.normal(first + uint64_t(j));
    }
  }
}

void Transformer::init_state(FlatBuffer& state) const {
  ECMOE_CHECK(state.size() == state_table_.total_floats(),
              "init_state: buffer does not belong to this model's router state");
  for (const TensorSpec& spec : state_table_.specs()) {
    float* v = state.data() + spec.offset;
    std::fill(v, v + spec.numel(), -1.f);
  }
}

void Transformer::update_cutoffs(FlatBuffer& state, const std::vector<RoutingStats>& layer_stats,
                                 float rate) const {
  ECMOE_CHECK(state.size() == state_table_.total_floats(),
              "update_cutoffs: buffer does not belong to this model's router state");
  ECMOE_CHECK(rate > 0.f && rate <= 1.f, "update_cutoffs: rate must be in (0, 1], got ", rate);
  for (int l = 0; l < config_.n_layers && l < int(layer_stats.size()); ++l) {
    const std::string name = layer_prefix(l) + "ffn.router.cutoff";
    if (!state_table_.contains(name)) continue;
    ecmoe::update_cutoffs(state.view(name), layer_stats[l], rate);
  }
}

namespace {

void check_params(const FlatBuffer& buffer, const TensorTable& table, const char* what) {
  ECMOE_CHECK(buffer.size() == table.total_floats(), "model: ", what, " buffer of ", buffer.size(),
              " floats does not belong to this model (", table.total_floats(), ")");
}

}  // namespace

ForwardResult Transformer::forward(const FlatBuffer& params, const Batch& batch, bool training,
                                   uint64_t seed) {
  check_params(params, table_, "parameter");
  PendingForward pending = start_forward(params.data(), nullptr, batch, training, seed);
  return finish_forward(pending);
}

ForwardResult Transformer::forward(const FlatBuffer& params, const FlatBuffer& state,
                                   const Batch& batch, bool training, uint64_t seed,
                                   std::optional<RouterKind> router) {
  check_params(params, table_, "parameter");
  ECMOE_CHECK(state.size() == state_table_.total_floats(),
              "model forward: router state buffer does not belong to this model");
  PendingForward pending = start_forward(params.data(), &state, batch, training, seed, router);
  return finish_forward(pending);
}

ForwardResult Transformer::forward_on_backend(const float* params, const FlatBuffer* state,
                                              const Batch& batch, bool training, uint64_t seed,
                                              std::optional<RouterKind> router) {
  PendingForward pending = start_forward_on_backend(params, state, batch, training, seed, router);
  return finish_forward(pending);
}

Transformer::PendingForward Transformer::start_forward_on_backend(
    const float* params, const FlatBuffer* state, const Batch& batch, bool training, uint64_t seed,
    std::optional<RouterKind> router) {
  ECMOE_CHECK(params != nullptr, "model forward: no parameters");
  ECMOE_CHECK(!state || state->size() == state_table_.total_floats(),
              "model forward: router state buffer does not belong to this model");
  return start_forward(params, state, batch, training, seed, router);
}

void Transformer::backward_on_backend(const float* params, float* grads) {
  ECMOE_CHECK(params != nullptr && grads != nullptr, "model backward: no parameters or gradients");
  backward_impl(params, grads);
}

void Transformer::set_moe_backends(const std::function<std::unique_ptr<MoeBackend>()>& make) {
  for (MoeLayer& layer : ffn_) layer.set_backend(make ? make() : nullptr);
}

void Transformer::set_nn_backend(nn::Backend& backend) {
  if (&backend == nn_) return;
  act_ = std::make_unique<Activations>();  // the old activations released by their backend
  nn_ = &backend;
}

void Transformer::set_moe_phase_times(PhaseTimes* times) {
  for (MoeLayer& layer : ffn_) layer.set_phase_times(times);
}

Transformer::PendingForward Transformer::start_forward(const float* p, const FlatBuffer* state,
                                                       const Batch& batch, bool training,
                                                       uint64_t seed,
                                                       std::optional<RouterKind> router) {
  ECMOE_CHECK(int64_t(batch.targets.size()) == batch.token_count(),
              "model forward: targets must have B·T = ", batch.token_count(), " entries");
  PendingForward pending{forward_trunk(p, state, batch, training, seed, router)};
  Activations& a = *act_;
  // logits = ln_f(h) · Eᵀ at the counted positions; its loss comes back with the layers' values
  lm_head_forward(*nn_, a.head, a.final_out.data(), batch.targets.data(), p + offsets_.embed_tokens,
                  {a.rows(), config_.d_model, config_.vocab_size, config_.precision});
  a.lm_head_ready = true;
  return pending;
}

ForwardResult Transformer::finish_forward(PendingForward& pending) {
  Activations& a = *act_;
  const double lm_loss = lm_head_loss(*nn_, a.head);
  ForwardResult result = finish_layers(pending.layers);
  result.lm_loss = lm_loss;
  result.counted = a.head.count;
  result.loss += result.lm_loss;
  return result;
}

ForwardResult Transformer::forward_hidden(const FlatBuffer& params, const Batch& batch,
                                          bool training, uint64_t seed) {
  check_params(params, table_, "parameter");
  return forward_hidden_on_backend(params.data(), batch, training, seed);
}

ForwardResult Transformer::forward_hidden_on_backend(const float* params, const Batch& batch,
                                                     bool training, uint64_t seed) {
  ECMOE_CHECK(params != nullptr, "model forward: no parameters");
  std::vector<MoeOutput> pending = forward_trunk(params, nullptr, batch, training, seed);
  return finish_layers(pending);
}

std::vector<MoeOutput> Transformer::forward_trunk(const float* p, const FlatBuffer* state,
                                                  const Batch& batch, bool training, uint64_t seed,
                                                  std::optional<RouterKind> router) {
  const int B = batch.batch_size, T = batch.seq_len, V = config_.vocab_size;
  const int d = config_.d_model, L = config_.n_layers;
  ECMOE_CHECK(B > 0 && T > 0 && T <= config_.seq_len, "model forward: batch ", B, " x ", T,
              " (sequence length must be in [1, ", config_.seq_len, "])");
  const int64_t N64 = int64_t(B) * T;
  ECMOE_CHECK(N64 <= (int64_t(1) << 30) / d, "model forward: batch too large");
  const int N = int(N64);
  ECMOE_CHECK(int64_t(batch.tokens.size()) == N64, "model forward: tokens must have B·T = ", N64,
              " entries");
  ECMOE_CHECK(batch.valid_len.empty() || int(batch.valid_len.size()) == B,
              "model forward: valid_len must be empty or have one entry per sequence");
  ECMOE_CHECK(
      batch.share.first_token >= 0 && batch.share.step_counted >= 0 && batch.share.parts >= 1,
      "model forward: a batch's share of its step needs first_token >= 0, step_counted "
      ">= 0 and parts >= 1");

  Activations& a = *act_;
  a.backward_ready = false;
  a.lm_head_ready = false;
  a.batch = B;
  a.seq_len = T;
  a.tokens = batch.tokens;
  a.valid_len = batch.valid_len;
  a.share = batch.share;
  nn::Backend& be = *nn_;
  // Bad ids and key lengths are refused here, on the host, before any backend sees them.
  nn::check_embedding_tokens(a.tokens.data(), {B, T, d, V});
  a.tokens_on_backend.upload(be, a.tokens);
  a.valid_len_on_backend.upload(be, a.valid_len);
  a.stream.resize(be, (2 * int64_t(L) + 1) * N64 * d);
  a.attn.resize(L);
  a.ln2_out.resize(be, int64_t(L) * N64 * d);
  a.ln2_mean.resize(be, int64_t(L) * N);
  a.ln2_rstd.resize(be, int64_t(L) * N);
  a.final_out.resize(be, N64 * d);
  a.final_mean.resize(be, N);
  a.final_rstd.resize(be, N);

  auto stream = [&](int i) { return a.stream.data() + int64_t(i) * N64 * d; };
  nn::AttentionConfig attn_cfg{B, T, config_.n_heads, config_.head_dim(),
                               config_.kind == ModelKind::kDecoder};
  attn_cfg.precision = config_.precision;

  nn::check_attention_config(attn_cfg, a.valid_len.empty() ? nullptr : a.valid_len.data());
  // h = embed(tokens) + positions
  nn_->embedding_forward(stream(0), a.tokens_on_backend.data(), p + offsets_.embed_tokens,
                         p + offsets_.embed_positions, {B, T, d, V});
  std::vector<MoeOutput> outputs;
  outputs.reserve(L);
  for (int l = 0; l < L; ++l) {
    const LayerOffsets& o = layers_[l];
    float* h_in = stream(2 * l);
    float* h_mid = stream(2 * l + 1);
    float* h_out = stream(2 * l + 2);
    // h_mid = h_in + attn(ln1(h_in))
    const AttentionBlockWeights aw{p + o.ln1_gain, p + o.ln1_bias, p + o.qkv_w,
                                   p + o.qkv_b,    p + o.out_w,    p + o.out_b};
    attention_block_forward(*nn_, h_mid, a.attn[l], h_in, aw, attn_cfg, a.valid_len_ptr());
    // h_out = h_mid + ffn(ln2(h_mid)); the MoE layer routes all N tokens (its groups, if any,
    // are consecutive runs of group_size tokens)
    float* ln2 = a.ln2_out.data() + int64_t(l) * N64 * d;
    float* mean = a.ln2_mean.data() + int64_t(l) * N;
    float* rstd = a.ln2_rstd.data() + int64_t(l) * N;
    nn_->layernorm_forward(ln2, mean, rstd, h_mid, p + o.ln2_gain, p + o.ln2_bias, N, d);
    const MoeWeights mw{o.router >= 0 ? p + o.router : nullptr, p + o.w1, p + o.w2};
    const std::string cutoff_name = layer_prefix(l) + "ffn.router.cutoff";
    const MoeConfig& fc = ffn_[l].config();
    // A dense layer has no router to swap (one expert, every token).
    const std::optional<RouterKind> layer_router =
        router && router_has_weights(fc.router) ? router : std::nullopt;
    ECMOE_CHECK(
        layer_router.value_or(fc.router) != RouterKind::kExpertThreshold || state != nullptr,
        "model forward: expert_threshold routing needs the router state (cutoffs)");
    const float* cutoffs =
        state && state_table_.contains(cutoff_name) ? state->get(cutoff_name) : nullptr;
    MoeInput in{ln2, a.tokens.data(), N, training, layer_seed(seed, l), cutoffs};
    in.router = layer_router;
    in.first_token = batch.share.first_token;  // noise by the token's place in the whole step
    in.residual = h_mid;                       // added by the layer's combine: no pass over h_out
    outputs.push_back(ffn_[l].forward_async(mw, in, h_out));
  }
  nn_->layernorm_forward(a.final_out.data(), a.final_mean.data(), a.final_rstd.data(),
                         stream(2 * L), p + offsets_.final_gain, p + offsets_.final_bias, N, d);
  a.backward_ready = true;
  return outputs;
}

ForwardResult Transformer::finish_layers(std::vector<MoeOutput>& pending) {
  ForwardResult result;
  result.layer_stats.reserve(pending.size());
  double aux_total = 0;
  // On a device the layers' losses and statistics come back now, all in one wait.
  for (size_t l = 0; l < pending.size(); ++l) {
    MoeOutput& out = pending[l];
    ffn_[l].finish(out);
    accumulate_aux(result.aux, out.aux);
    aux_total += double(out.aux.weighted_total);
    result.layer_stats.push_back(std::move(out.stats));
  }
  result.loss = aux_total;
  return result;
}

void Transformer::backward(const FlatBuffer& params, FlatBuffer& grads) {
  check_params(params, table_, "parameter");
  check_params(grads, table_, "gradient");
  backward_impl(params.data(), grads.data());
}

void Transformer::backward_impl(const float* p, float* g) {
  Activations& a = *act_;
  ECMOE_CHECK(a.backward_ready && a.lm_head_ready,
              "model backward: needs a forward first (and runs once per forward)");
  const int64_t Nd = int64_t(a.rows()) * config_.d_model;
  a.d_tmp.resize(*nn_, Nd);
  nn_->fill(a.d_tmp.data(), Nd, 0.f);
  lm_head_backward(
      *nn_, a.d_tmp.data(), g + offsets_.embed_tokens, a.head, p + offsets_.embed_tokens,
      {a.rows(), config_.d_model, config_.vocab_size, config_.precision}, a.share.step_counted);
  backward_trunk(p, g);
}

void Transformer::backward_from_hidden(const FlatBuffer& params, FlatBuffer& grads,
                                       const float* d_hidden) {
  check_params(params, table_, "parameter");
  check_params(grads, table_, "gradient");
  backward_from_hidden_on_backend(params.data(), grads.data(), d_hidden);
}

void Transformer::backward_from_hidden_on_backend(const float* params, float* grads,
                                                  const float* d_hidden) {
  Activations& a = *act_;
  ECMOE_CHECK(a.backward_ready,
              "model backward: needs a forward first (and runs once per forward)");
  ECMOE_CHECK(params != nullptr && grads != nullptr && d_hidden != nullptr,
              "model backward: no parameters, gradients or d_hidden");
  const int64_t Nd = int64_t(a.rows()) * config_.d_model;
  a.d_tmp.resize(*nn_, Nd);
  nn_->copy(a.d_tmp.data(), d_hidden, std::size_t(Nd) * sizeof(float));
  backward_trunk(params, grads);
}

void Transformer::backward_trunk(const float* p, float* g) {
  Activations& a = *act_;
  a.backward_ready = false;
  a.lm_head_ready = false;
  const int B = a.batch, T = a.seq_len, N = a.rows(), V = config_.vocab_size;
  const int d = config_.d_model, L = config_.n_layers;
  const int64_t Nd = int64_t(N) * d;
  auto stream = [&](int i) { return a.stream.data() + int64_t(i) * Nd; };
  nn::AttentionConfig attn_cfg{B, T, config_.n_heads, config_.head_dim(),
                               config_.kind == ModelKind::kDecoder};
  attn_cfg.precision = config_.precision;
  a.d_stream.resize(*nn_, Nd);
  float* dh = a.d_stream.data();
  float* dtmp = a.d_tmp.data();  // holds dL/d(final_out) on entry

  // Final LayerNorm: dh = dL/d(stream[2L]).
  nn_->fill(dh, Nd, 0.f);
  nn_->layernorm_backward(dh, g + offsets_.final_gain, g + offsets_.final_bias, dtmp, stream(2 * L),
                          p + offsets_.final_gain, a.final_mean.data(), a.final_rstd.data(), N, d);
  for (int l = L - 1; l >= 0; --l) {
    const LayerOffsets& o = layers_[l];
    // FFN half: dh = dL/dh_out passes through the residual; the FFN path adds into it.
    const MoeWeights mw{o.router >= 0 ? p + o.router : nullptr, p + o.w1, p + o.w2};
    MoeGrads mg{o.router >= 0 ? g + o.router : nullptr, g + o.w1, g + o.w2};
    // dtmp = dL/d(ln2_out), aux-loss gradients (the batch's share) included: written over, not
    // zeroed first.
    ffn_[l].backward(mw, mg, dh, dtmp, 1.f / float(a.share.parts), nn::GradWrite::kOverwrite);
    nn_->layernorm_backward(dh, g + o.ln2_gain, g + o.ln2_bias, dtmp, stream(2 * l + 1),
                            p + o.ln2_gain, a.ln2_mean.data() + int64_t(l) * N,
                            a.ln2_rstd.data() + int64_t(l) * N, N, d);
    // Attention half: dh becomes dL/dh_in.
    const AttentionBlockWeights aw{p + o.ln1_gain, p + o.ln1_bias, p + o.qkv_w,
                                   p + o.qkv_b,    p + o.out_w,    p + o.out_b};
    AttentionBlockGrads ag{g + o.ln1_gain, g + o.ln1_bias, g + o.qkv_w,
                           g + o.qkv_b,    g + o.out_w,    g + o.out_b};
    attention_block_backward(*nn_, dh, ag, a.attn_scratch, a.attn[l], stream(2 * l), aw, attn_cfg,
                             a.valid_len_ptr());
  }
  nn_->embedding_backward(g + offsets_.embed_tokens, g + offsets_.embed_positions, dh,
                          a.tokens_on_backend.data(), {B, T, d, V});
}

std::vector<float> Transformer::target_log_probs() const {
  const LmHead& head = act_->head;
  std::vector<float> counted(std::size_t(head.count));
  if (head.count > 0) lm_head_target_log_probs(counted.data(), head, config_.vocab_size);
  std::vector<float> out(std::size_t(act_->rows()), 0.f);
  for (std::size_t j = 0; j < counted.size(); ++j) out[std::size_t(head.rows[j])] = counted[j];
  return out;
}

const float* Transformer::final_hidden() const {
  ECMOE_CHECK(act_->rows() > 0, "final_hidden: no forward yet");
  return act_->final_out.data();
}

}  // namespace ecmoe

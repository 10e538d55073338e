// AdamW (decoupled weight decay, Loshchilov & Hutter) over the flat buffers of one tensor table,
// with torch.optim.AdamW's formulas and rounding of the step constants, and bitwise identical for
// any thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor_table.h"
#include "optim/adamw_update.h"

namespace ecmoe {

// The default decay rule: only tensors with ≥ 2 dimensions (matmul weights, embeddings, expert
// weights, the router) are decayed; biases and LayerNorm gains/offsets are not. This is the
// GPT-2/nanoGPT/llm.c convention: shrinking a gain or a bias toward 0 is not regularisation, it
// changes what the layer computes.
bool decay_if_matrix(const TensorSpec& spec);

struct AdamWConfig {
  // PyTorch's defaults, so a run can be checked against torch.optim.AdamW as is. Large-model
  // pretraining often uses beta2 = 0.95 for stability; set it explicitly there. Double, like
  // torch's Python floats: in float, 1 − 0.999f is off by 1.3e-5 relative, which shows in v.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: p ← p·(1 − lr·weight_decay) each step
  // Which tensors are decayed; empty means decay_if_matrix.
  std::function<bool(const TensorSpec&)> decays = {};
  void validate() const;  // throws ecmoe::Error on a value out of range
};

// Step t's constants (t >= 1, the step being taken) at learning rate lr, in double and rounded
// once, like torch (Python floats) does.
AdamWStepConstants adamw_step_constants(const AdamWConfig& config, int64_t t, float lr);

// A fixed slice of one tensor: the unit of the update's parallel loop, and where the decay rule is
// applied. The split depends only on the table, never on the thread count. The CUDA backend runs
// the same list (cuda/optimizer.h).
struct AdamWChunk {
  int64_t begin, end;  // in floats, into the flat buffers
  bool decay;
};

// Owns the two moment buffers and the step counter; the learning rate comes from the schedule
// at each step, so the optimizer holds no schedule state.
class AdamW {
 public:
  AdamW(const TensorTable& table, AdamWConfig config = {});

  // One update: t = ++step_count(); for each element, with g = grads (clip beforehand):
  //   p ← p·(1 − lr·wd)  (decayed tensors only)
  //   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
  //   p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
  // (adamw_update in optim/adamw_update.h, rounding step by rounding step.) Padding between
  // tensors is zero in every buffer and stays zero.
  void step(FlatBuffer& params, const FlatBuffer& grads, float lr);

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t steps);  // when resuming from a checkpoint
  FlatBuffer& m() { return m_; }       // first moment; checkpointed as "adam_m." + name
  FlatBuffer& v() { return v_; }       // second moment; checkpointed as "adam_v." + name
  const FlatBuffer& m() const { return m_; }
  const FlatBuffer& v() const { return v_; }
  const AdamWConfig& config() const { return config_; }
  // The tensors' chunks in table order, each with its decay flag (padding is in none).
  const std::vector<AdamWChunk>& chunks() const { return chunks_; }

 private:
  const TensorTable* table_;
  AdamWConfig config_;
  FlatBuffer m_, v_;
  std::vector<AdamWChunk> chunks_;
  int64_t step_ = 0;
};

}  // namespace ecmoe

// Classification head on the encoder's final hidden states:
//   pooled = hidden[b, 0]                       (Pooling::kFirst: the [CLS] slot)
//          | mean of hidden[b, t] over t < len_b (Pooling::kMean: valid positions only)
//   logits = pooled · W + bias;   loss = mean over the batch of softmax cross-entropy
// hidden is [B·T, d], pooled [B, d], W [d, C], bias [C], logits [B, C].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/tensor_table.h"

namespace ecmoe::finetune {

enum class Pooling { kFirst, kMean };
Pooling parse_pooling(const std::string& name);  // "first" or "mean"
std::string pooling_name(Pooling pooling);

struct HeadShape {
  int batch = 0;
  int seq_len = 0;
  int dim = 0;
  int classes = 0;
};

// The head's tensors: "head.weight" [d, C] and "head.bias" [C].
TensorTable head_table(int dim, int classes);
// weight N(0, std²) from Rng(seed, 0), bias 0.
void init_head(FlatBuffer& params, float std, uint64_t seed);

// One forward's state, kept for backward; buffers grow once and are reused.
struct HeadState {
  FloatVec pooled;           // [B, d]
  FloatVec logits;           // [B, C]; backward overwrites it with dlogits
  FloatVec logsumexp;        // [B]
  std::vector<int> lengths;  // [B] positions pooled over (mean pooling)
  std::vector<int> labels;   // [B], -1 when not given
  bool ready = false;
};

// How many positions of sequence b the head pools (rows b·T .. b·T + n - 1 of hidden): 1 (the
// [CLS] slot) or its valid length (mean pooling; T without valid_len). Throws when the valid length
// is outside [1, T].
int pooled_length(Pooling pooling, const int32_t* valid_len, int b, int seq_len);

// valid_len [B] or nullptr (all T valid); labels [B] or nullptr (inference: loss 0, no backward).
// Returns the mean cross-entropy; state.logits holds the logits until backward.
double head_forward(HeadState& state, const float* hidden, const int32_t* valid_len,
                    const int32_t* labels, const float* weight, const float* bias, Pooling pooling,
                    const HeadShape& shape);

// Gradient of the mean loss: d_hidden [B·T, d], dweight, dbias all accumulated (+=). Once per
// forward with labels; the pooling is the forward's (it saved how many positions it pooled).
void head_backward(float* d_hidden, float* dweight, float* dbias, HeadState& state,
                   const float* weight, const HeadShape& shape);

// argmax of row b of the last forward's logits (lowest index on ties).
int head_prediction(const HeadState& state, int b, int classes);

}  // namespace ecmoe::finetune

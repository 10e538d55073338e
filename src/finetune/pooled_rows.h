// The rows of the encoder's final hidden states [B·T, d] that the classification head pools
// (classifier_head.h: rows b·T + t for t < pooled_length), moved between the model's dense backend
// and the host, where the head runs. The head's forward reads only these rows and its backward
// writes only these, so an encoder on a device sends the head sum(lengths)·d floats a step (B rows
// with first pooling) and gets as many back, instead of B·T·d each way. On the CPU backend the same
// calls are copies, and the head computes on the same values either way.
#pragma once
#include <cstdint>
#include <vector>

#include "core/aligned.h"
#include "finetune/classifier_head.h"
#include "nn/backend.h"
#include "nn/buffer.h"

namespace ecmoe::finetune {

class PooledRows {
 public:
  // hidden [B·T, d] in be's memory -> the host: returns [B·T, d] holding hidden's pooled rows,
  // zero elsewhere, valid until the next call. valid_len [B] (host) or nullptr.
  const float* to_host(nn::Backend& be, const float* hidden, const int32_t* valid_len,
                       Pooling pooling, const HeadShape& shape);
  // The adjoint, for the rows of the last to_host: grad [B·T, d] (host; only the pooled rows are
  // read) -> [B·T, d] in be's memory holding grad's pooled rows, zero elsewhere (valid until the
  // next call).
  const float* to_backend(nn::Backend& be, const float* grad, const HeadShape& shape);

 private:
  std::vector<int> rows_;  // the pooled rows of the last to_host, sequence by sequence
  nn::Buffer<int> rows_on_backend_;
  nn::Buffer<float> packed_;  // [rows, d] in the backend's memory
  nn::Buffer<float> full_;    // [B·T, d] in the backend's memory (to_backend's result)
  FloatVec packed_host_;      // [rows, d]
  FloatVec host_;             // [B·T, d] (to_host's result)
};

}  // namespace ecmoe::finetune

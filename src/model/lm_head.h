// The language-model head: logits = h · Eᵀ (tied to the token embedding E), mean cross-entropy
// over the counted positions (target >= 0). Only counted rows go through the [rows, vocab] output
// GEMM: a masked-LM batch counts ~15% of its positions, so gathering them first saves ~85% of the
// largest matmul and of the logits memory. When every row counts (a decoder batch without
// padding), h is used in place, without the gather.
#pragma once
#include <cstdint>
#include <vector>

#include "core/precision.h"
#include "nn/backend.h"
#include "nn/buffer.h"

namespace ecmoe {

struct LmHeadShape {
  int rows = 0;                            // all positions, batch · seq_len
  int dim = 0;                             // d_model
  int vocab = 0;                           // rows of the table
  Precision precision = Precision::kFp32;  // of the output GEMMs (the loss is fp32 either way)
};

// State of one forward, kept for backward; buffers grow once and are reused. The counted rows and
// their targets are found on the host and copied to the backend.
struct LmHead {
  std::vector<int> rows;            // [M] counted positions, in order
  std::vector<int> targets;         // [M] their targets
  nn::Buffer<int> rows_on_backend;  // the same two in the backend's memory
  nn::Buffer<int> targets_on_backend;
  nn::Buffer<float> gathered;    // [M, d] h at the counted rows (unused when M == rows)
  nn::Buffer<float> logits;      // [M, V]; backward overwrites it with dlogits
  nn::Buffer<float> logsumexp;   // [M]
  nn::Buffer<float> d_gathered;  // [M, d]
  const float* input = nullptr;  // [M, d]: gathered, or h itself when every row counts
  int64_t count = 0;
  bool logits_valid = false;    // false once backward has turned them into gradients
  nn::CrossEntropyResult loss;  // on its way from the backend until lm_head_loss
};

// h [rows, dim], targets [rows] (-1: no loss), table [vocab, dim] -> mean cross-entropy over the
// counted rows (0 when none), which lm_head_loss returns: a device computes it meanwhile, and the
// backward may be queued before it is waited for. h must stay valid until backward. The ops run
// on `be` (h and table in its memory); the targets are read on the host to find the counted rows.
void lm_head_forward(nn::Backend& be, LmHead& head, const float* h, const int32_t* targets,
                     const float* table, const LmHeadShape& shape);
double lm_head_loss(nn::Backend& be, LmHead& head);

// The rows the head's buffers first make room for when `counted` of `rows` positions count: an
// eighth more, or 4 sqrt(counted) + 8 more where that is larger, at most rows. A masked LM's count
// varies from batch to batch (binomially: a standard deviation of about sqrt(counted), ~1.3% at
// gpu-small's batch), and later batches then seldom grow the buffers (on a GPU, freeing memory
// waits for the whole device). train/memory_estimate.cpp counts the same.
int64_t lm_head_room_rows(int64_t counted, int64_t rows);

// log p(target) of each counted row of the last forward, [count] in the order of head.rows:
// logit[target] − logsumexp. Valid until backward turns the logits into gradients. Copies the
// logits to the host when the backend is not the CPU.
void lm_head_target_log_probs(float* out, const LmHead& head, int vocab);

// Gradient of the cross-entropy summed over the counted rows and divided by `divisor` (0: by
// their count, the mean's gradient; a micro-batch or a rank's slice divides by its whole step's
// count, model/transformer.h StepShare): dh [rows, dim] (+=) and dtable [vocab, dim] (+=). Once
// per forward: the logits buffer is reused for their gradient.
void lm_head_backward(nn::Backend& be, float* dh, float* dtable, LmHead& head, const float* table,
                      const LmHeadShape& shape, int64_t divisor = 0);

}  // namespace ecmoe

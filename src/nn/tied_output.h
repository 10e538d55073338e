// Output layer tied to the token embedding: logits = h · Eᵀ, E the [vocab, dim] token table, so
// the model has one [vocab, dim] matrix for both ends and its gradient gets both contributions.
#pragma once
#include "nn/linear.h"

namespace ecmoe::nn {

// logits: [rows, vocab]; h: [rows, dim]; table: [vocab, dim]. Shape: {rows, in_dim = dim,
// out_dim = vocab}. Saves nothing (backward needs h and the table, which the caller keeps).
// Tip: for masked LM, gather the counted rows first; the other rows carry no loss.
void tied_output_forward(float* logits, const float* h, const float* table,
                         const LinearShape& shape, Precision precision = Precision::kFp32);
// Accumulates (+=) into dh [rows, dim] and dtable [vocab, dim] (either may be nullptr).
void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                          const float* table, const LinearShape& shape,
                          Precision precision = Precision::kFp32);

}  // namespace ecmoe::nn

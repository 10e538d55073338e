// Softmax over each row of [n, e] (the router's scores over experts) and its adjoint.
#pragma once

namespace ecmoe {

// logits [n, e] -> probs [n, e], softmax over each row
void softmax_rows_forward(float* probs, const float* logits, int n, int e);
// accumulates dlogits [n, e] += J^T · dprobs
void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e);

}  // namespace ecmoe

// The loss head's non-GEMM part on the GPU: softmax cross-entropy over the vocabulary, forward
// beside backward, the counterparts of nn/cross_entropy.h (the tied output GEMMs are
// cuda/linear.h's). Same conventions: target nn::kIgnoreIndex (-1) marks a row without loss, the
// loss is the mean over the counted rows (0 when none), the gradient is
// dloss · (softmax − onehot) / count at counted rows and 0 at the others. Targets are checked
// on the host (nn::count_targets, which also gives `count`) before they are uploaded.
//
// Determinism: a block of a fixed size per row, its sums in fixed trees; the loss summed in
// double by one block of a fixed size (each thread its rows in order, then a fixed tree). No
// atomics: the same bits run to run. Against the CPU within float tolerance: expf and logf are
// CUDA's, not glibc's libmvec, and the order of the row's sum differs.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ecmoe::cuda {

// nn::cross_entropy_forward. logits [rows, vocab], targets [rows] -> logsumexp [rows] (0 at
// ignored rows) and result [3] (device doubles): the mean loss over the counted rows, their count
// (nn::count_targets), and the first row whose target is outside [0, vocab) and not ignored
// (rows when every target is valid; the loss and count then leave such rows out). One copy of
// result tells the host everything: no targets go to the host.
void cross_entropy_forward(double* result, float* logsumexp, const float* logits,
                           const int* targets, int rows, int vocab, cudaStream_t stream);
// nn::cross_entropy_backward: WRITES dlogits [rows, vocab] (may be the logits buffer itself).
void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                            const int* targets, int64_t count, float dloss, int rows, int vocab,
                            cudaStream_t stream);

}  // namespace ecmoe::cuda

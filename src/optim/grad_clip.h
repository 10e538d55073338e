// Global gradient-norm clipping. The norm is summed in a fixed order (fixed chunks, partial sums
// in double, added in chunk order), so it is bitwise the same for any thread count: a norm that
// changed with the thread count would change the clipping and the whole run after it.
#pragma once
#include <cstdint>
#include <span>

#include "core/tensor_table.h"
#include "dist/comm.h"

namespace ecmoe {

// The order of the sum of squares, which the CUDA backend's norm (cuda/optimizer.h) follows too,
// so that both give the same bits: a buffer in chunks of kGradNormChunk floats; in a chunk,
// kGradNormLanes running sums in double (element i into lane i mod kGradNormLanes, the chunk's
// last n mod kGradNormLanes elements into lane 0 after it), added in lane order onto 0; the
// chunks' sums added in chunk order onto 0. (A float's square is exact in double, so a fused
// multiply-add gives the same bits as a multiply and an add.)
inline constexpr int64_t kGradNormChunk = 1 << 14;
inline constexpr int kGradNormLanes = 8;

// L2 norm over every gradient of the buffer (padding is zero and adds nothing). A table with
// expert shards (TensorSpec::sharded) needs the communicator: the shards' squares are summed over
// ranks (in rank order) and the replicated tensors' counted once, so every rank gets the norm of
// the whole model's gradient, the same bits everywhere.
float grad_norm(const FlatBuffer& grads, const dist::Comm* comm = nullptr);

// Scales `grads` so their global L2 norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_:
// factor max_norm / (norm + 1e-6), applied only when below 1), and returns the norm before
// clipping, for logging and for the caller's skip decision. max_norm <= 0 only measures. A
// non-finite norm (inf/NaN gradients) leaves the gradients untouched: the caller should skip the
// step rather than apply a NaN scale.
float clip_grad_norm(FlatBuffer& grads, float max_norm, const dist::Comm* comm = nullptr);

// The same over several buffers as one gradient (e.g. an encoder's and a task head's): their
// joint norm (squares summed in buffer order), and one factor applied to all of them.
float clip_grad_norm(std::span<FlatBuffer* const> buffers, float max_norm,
                     const dist::Comm* comm = nullptr);

// The parts clip_grad_norm is made of, for a gradient kept in several places (a device's buffer
// and host buffers: optim/optimizer_device.h's clip_grad_norm):
// - the sum of squares of one buffer, in the order above (grad_norm is its square root; several
//   buffers' sums are added in buffer order onto 0);
double grad_sum_of_squares(const FlatBuffer& grads, const dist::Comm* comm = nullptr);
// - the factor that clips a gradient of this norm: float(max_norm / (norm + 1e-6)) when that is
//   below 1 (computed in double), else 1; 1 for max_norm <= 0 or a non-finite norm;
float clip_scale(float norm, float max_norm);
// - grads *= scale (nothing when scale is 1).
void scale_grads(FlatBuffer& grads, float scale);

}  // namespace ecmoe

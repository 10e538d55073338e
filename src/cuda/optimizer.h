// The optimizer step on the GPU: AdamW and the gradient norm with clipping over the flat
// parameter and gradient buffers (core/tensor_table.h's layout, device pointers), the
// counterparts of optim/adamw.h and optim/grad_clip.h, with the same bits as the CPU's:
// - AdamW runs the CPU's own per-element update (optim/adamw_update.h, compiled for both) over
//   the CPU optimizer's chunk list, so decay flags and untouched padding are the CPU's too.
// - The norm sums squares in the CPU's order (optim/grad_clip.h: kGradNormChunk chunks of
//   kGradNormLanes double lanes, lanes then chunks added in order): a thread per lane, then one
//   thread adds the chunks' sums in order. The squares are exact in double, sqrt and the clipping
//   factor are correctly rounded on both sides.
// No atomics anywhere: the same bits run to run. Tables with expert shards (MPI) are not
// supported on the GPU: the norm is over whole buffers, as ecmoe::grad_norm without shards.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "cuda/device_buffer.h"
#include "optim/adamw.h"

namespace ecmoe::cuda {

// AdamW with its moments on the device: a copy of the CPU optimizer's state (config, chunk
// list, step count, moments), stepped on device buffers.
class DeviceAdamW {
 public:
  DeviceAdamW(const AdamW& host, cudaStream_t stream);
  // AdamW::step on params, grads [size()]: t = ++step_count(), then the update of every chunk.
  // clip_scale, if given, is a device float (queue_grad_norm's) that every gradient is
  // multiplied by first, as scale_grads would have done: the same bits as scaling and then
  // stepping, without a pass that reads and writes every gradient. params16, if given, gets
  // bf16_bits of every updated parameter (Context::params_bf16's copy).
  void step(float* params, const float* grads, float lr, cudaStream_t stream,
            const float* clip_scale = nullptr, uint16_t* params16 = nullptr);
  // The moments and the step count back into `host` (for a checkpoint; waits for the stream).
  void copy_to(AdamW& host, cudaStream_t stream) const;

  int64_t step_count() const { return step_; }
  int64_t size() const { return int64_t(m_.size()); }
  DeviceVec<float>& m() { return m_; }
  DeviceVec<float>& v() { return v_; }

 private:
  AdamWConfig config_;
  DeviceVec<AdamWChunk> chunks_;
  DeviceVec<float> m_, v_;
  int64_t step_ = 0;
};

// A gradient buffer on the device: `size` floats (a whole FlatBuffer, padding included).
struct DeviceGrads {
  float* data = nullptr;
  int64_t size = 0;
};

struct GradNormScratch {
  DeviceVec<double> partials;  // one per chunk of every buffer
  DeviceVec<float> result;     // [norm, scale]
  DeviceVec<double> squares;   // [1]: the last call's sum of squares
};

// ecmoe::clip_grad_norm over several buffers as one gradient (squares summed in buffer order):
// scales them on the device when the norm exceeds max_norm (max_norm <= 0 only measures; a
// non-finite norm leaves them untouched) and returns the norm before clipping (waits for the
// stream: the one copy to the host of a step). At most kMaxGradBuffers buffers.
inline constexpr int kMaxGradBuffers = 8;
float clip_grad_norm(std::span<const DeviceGrads> buffers, float max_norm, GradNormScratch& scratch,
                     cudaStream_t stream);
// The same norm, only queued: the buffers are not changed, the clipping factor stays on the
// device for DeviceAdamW::step to apply (clip_scale_on_device), and the norm is at
// norm_on_device(scratch) once the stream gets there (the caller copies it back: no wait here).
void queue_grad_norm(std::span<const DeviceGrads> buffers, float max_norm, GradNormScratch& scratch,
                     cudaStream_t stream);
const float* norm_on_device(const GradNormScratch& scratch);
// The factor of scratch's last queue_grad_norm: a device pointer (1 when nothing is to be
// scaled), and the scaling itself for when the gradients are wanted scaled (an error report).
const float* clip_scale_on_device(const GradNormScratch& scratch);
void apply_clip_scale(std::span<const DeviceGrads> buffers, const GradNormScratch& scratch,
                      cudaStream_t stream);
// ecmoe::grad_norm of one buffer.
float grad_norm(const float* grads, int64_t size, GradNormScratch& scratch, cudaStream_t stream);
// ecmoe::grad_sum_of_squares of one buffer (waits for the stream), and ecmoe::scale_grads
// (grads *= scale; nothing when scale is 1): the device's part of a clipping over buffers on the
// device and on the host (optim/optimizer_device.h).
double grad_sum_of_squares(const float* grads, int64_t size, GradNormScratch& scratch,
                           cudaStream_t stream);
void scale_grads(float* grads, int64_t size, float scale, cudaStream_t stream);

}  // namespace ecmoe::cuda

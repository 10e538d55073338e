#include <cmath>
#include <cstddef>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"
#include "cuda/optimizer.h"
#include "cuda/vector_access.cuh"
#include "optim/adamw_update.h"
#include "optim/grad_clip.h"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kGradNormChunk;
constexpr int kLanes = kGradNormLanes;
static_assert(32 % kLanes == 0, "a chunk's lanes sit in one warp");

// Block c: chunk c of the CPU's list, every element through the CPU's own update; a gradient
// first multiplied by *clip_scale (if given and not 1), rounded alone as scale_kernel's product.
// V = 4: the chunk's elements from its first multiple of 4 to its last are taken four at a time
// (16-byte loads and stores of p, g, m and v: their pointers are aligned for it), the few before
// and after one at a time; each element's update is the same either way, so are its bits.
// p16, if not null, gets each updated parameter rounded to bf16 (bf16_bits).
template <int V>
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, uint16_t* p16,
                             const AdamWChunk* chunks, AdamWStepConstants k,
                             const float* clip_scale) {
  const AdamWChunk chunk = chunks[blockIdx.x];
  const float decay = chunk.decay ? k.decay_factor : 1.f;
  const float scale = clip_scale != nullptr ? *clip_scale : 1.f;
  const auto update = [&](float& pi, float& mi, float& vi, float gi) {
    adamw_update(pi, mi, vi, scale == 1.f ? gi : __fmul_rn(gi, scale), decay, k);
  };
  const auto one_at_a_time = [&](int64_t from, int64_t to) {
    for (int64_t i = from + threadIdx.x; i < to; i += blockDim.x) {
      update(p[i], m[i], v[i], g[i]);
      if (p16 != nullptr) p16[i] = bf16_bits(p[i]);
    }
  };
  if constexpr (V == 1) {
    one_at_a_time(chunk.begin, chunk.end);
  } else {
    const int64_t head = min(chunk.end, (chunk.begin + V - 1) / V * V);
    const int64_t body = head + (chunk.end - head) / V * V;
    one_at_a_time(chunk.begin, head);
    for (int64_t i = head + int64_t(threadIdx.x) * V; i < body; i += int64_t(blockDim.x) * V) {
      Floats<V> pv = load_floats<V>(p + i), mv = load_floats<V>(m + i), vv = load_floats<V>(v + i);
      const Floats<V> gv = load_floats<V>(g + i);
#pragma unroll
      for (int e = 0; e < V; ++e) update(pv.v[e], mv.v[e], vv.v[e], gv.v[e]);
      store_floats<V>(p + i, pv);
      store_floats<V>(m + i, mv);
      store_floats<V>(v + i, vv);
      if (p16 != nullptr) store_floats<V>(p16 + i, pv);
    }
    one_at_a_time(body, chunk.end);
  }
}

// Thread (chunk, lane): lane l's running sum of the chunk's squares in double, elements l, l + 8,
// ... below the chunk's last multiple of 8, lane 0 then adding the rest in order (the CPU's
// chunk_sum_of_squares); the chunk's sum is 0 + lane 0 + lane 1 + ... + lane 7, in that order.
__global__ void chunk_squares_kernel(double* partials, const float* g, int64_t n,
                                     int64_t n_chunks) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t chunk = t / kLanes;
  const int lane = int(t % kLanes);
  double acc = 0.0;
  if (chunk < n_chunks) {
    const int64_t begin = chunk * kChunk;
    const int64_t len = n - begin < kChunk ? n - begin : kChunk;
    const int64_t body = len / kLanes * kLanes;
    const float* x = g + begin;
    for (int64_t i = lane; i < body; i += kLanes) {
      const double d = x[i];
      acc += d * d;  // exact product: fused or not, the same bits
    }
    if (lane == 0)
      for (int64_t i = body; i < len; ++i) {
        const double d = x[i];
        acc += d * d;
      }
  }
  // Every lane of the warp takes part in the shuffles, inside the grid or not.
  const int first = int(threadIdx.x % 32) / kLanes * kLanes;
  double sum = 0.0;
  for (int l = 0; l < kLanes; ++l) sum += __shfl_sync(kFullMask, acc, first + l);
  if (lane == 0 && chunk < n_chunks) partials[chunk] = sum;
}

struct BufferChunks {
  int64_t begin[kMaxGradBuffers + 1];  // buffer b's chunks are partials [begin[b], begin[b+1])
  int count;
};

// One thread: each buffer's chunk sums in order onto 0, the buffers' totals in order onto 0 (the
// CPU's sum_of_squares and clip_grad_norm), then the norm and the clipping factor as the CPU
// computes them: result = [norm, scale], scale 1 when nothing is to be scaled; squares_out = the
// sum of squares.
__global__ void norm_kernel(float* result, double* squares_out, const double* partials,
                            BufferChunks chunks, float max_norm) {
  double squares = 0.0;
  for (int b = 0; b < chunks.count; ++b) {
    double total = 0.0;
    for (int64_t c = chunks.begin[b]; c < chunks.begin[b + 1]; ++c) total += partials[c];
    squares += total;
  }
  const float norm = float(sqrt(squares));
  float scale = 1.f;
  if (max_norm > 0.f && isfinite(norm)) {
    const double coef = double(max_norm) / (double(norm) + 1e-6);
    if (coef < 1.0) scale = float(coef);
  }
  result[0] = norm;
  result[1] = scale;
  *squares_out = squares;
}

__device__ void scale_elements(float* g, int64_t n, float scale) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
       j += int64_t(gridDim.x) * blockDim.x)
    g[j] *= scale;
}

__global__ void scale_kernel(float* g, int64_t n, const float* result) {
  const float scale = result[1];
  if (scale == 1.f) return;  // g·1 = g: the CPU leaves such gradients alone
  scale_elements(g, n, scale);
}

__global__ void scale_by_kernel(float* g, int64_t n, float scale) { scale_elements(g, n, scale); }

// Every buffer's chunk sums, then norm_kernel: scratch.result = [norm, scale] and
// scratch.squares = [sum of squares], on the device.
void sum_squares(std::span<const DeviceGrads> buffers, float max_norm, GradNormScratch& scratch,
                 cudaStream_t stream) {
  ECMOE_CHECK(buffers.size() <= size_t(kMaxGradBuffers), "cuda clip_grad_norm: at most ",
              kMaxGradBuffers, " buffers");
  BufferChunks chunks{};
  chunks.count = int(buffers.size());
  for (size_t b = 0; b < buffers.size(); ++b)
    chunks.begin[b + 1] = chunks.begin[b] + (buffers[b].size + kChunk - 1) / kChunk;
  scratch.partials.resize(size_t(chunks.begin[buffers.size()]));
  scratch.result.resize(2);
  scratch.squares.resize(1);
  for (size_t b = 0; b < buffers.size(); ++b) {
    const int64_t n_chunks = chunks.begin[b + 1] - chunks.begin[b];
    if (n_chunks == 0) continue;
    launch(chunk_squares_kernel, blocks_for(n_chunks * kLanes, kThreads), kThreads, 0, stream,
           scratch.partials.data() + chunks.begin[b], buffers[b].data, buffers[b].size, n_chunks);
  }
  launch(norm_kernel, 1, 1, 0, stream, scratch.result.data(), scratch.squares.data(),
         scratch.partials.data(), chunks, max_norm);
}

}  // namespace

DeviceAdamW::DeviceAdamW(const AdamW& host, cudaStream_t stream)
    : config_(host.config()), step_(host.step_count()) {
  chunks_.upload(std::span<const AdamWChunk>(host.chunks()), stream);
  m_.upload(std::span<const float>(host.m().data(), size_t(host.m().size())), stream);
  v_.upload(std::span<const float>(host.v().data(), size_t(host.v().size())), stream);
  ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host's buffers were read
}

void DeviceAdamW::step(float* params, const float* grads, float lr, cudaStream_t stream,
                       const float* clip_scale, uint16_t* params16) {
  ECMOE_CHECK(std::isfinite(lr) && lr >= 0.f, "AdamW: learning rate must be >= 0, got ", lr);
  ++step_;
  const AdamWStepConstants k = adamw_step_constants(config_, step_, lr);
  if (chunks_.empty()) return;
  const bool by_4 = aligned_for_4(params, grads, m_.data(), v_.data()) &&
                    (params16 == nullptr || aligned_for_4(params16));
  launch(by_4 ? adamw_kernel<4> : adamw_kernel<1>, unsigned(chunks_.size()), kThreads, 0, stream,
         params, grads, m_.data(), v_.data(), params16, chunks_.data(), k, clip_scale);
}

void DeviceAdamW::copy_to(AdamW& host, cudaStream_t stream) const {
  ECMOE_CHECK(host.m().size() == size(), "DeviceAdamW: the host optimizer has another size");
  if (size() > 0) {
    ECMOE_CUDA_CHECK(
        cudaMemcpyAsync(host.m().data(), m_.data(), m_.bytes(), cudaMemcpyDeviceToHost, stream));
    ECMOE_CUDA_CHECK(
        cudaMemcpyAsync(host.v().data(), v_.data(), v_.bytes(), cudaMemcpyDeviceToHost, stream));
  }
  ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  host.set_step_count(step_);
}

namespace {
float download_norm(const GradNormScratch& scratch, cudaStream_t stream) {
  float norm = 0.f;
  ECMOE_CUDA_CHECK(
      cudaMemcpyAsync(&norm, scratch.result.data(), sizeof(float), cudaMemcpyDeviceToHost, stream));
  ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return norm;
}
}  // namespace

void apply_clip_scale(std::span<const DeviceGrads> buffers, const GradNormScratch& scratch,
                      cudaStream_t stream) {
  for (const DeviceGrads& g : buffers) {
    if (g.size == 0) continue;
    launch(scale_kernel, blocks_for(g.size, kThreads), kThreads, 0, stream, g.data, g.size,
           scratch.result.data());
  }
}

float clip_grad_norm(std::span<const DeviceGrads> buffers, float max_norm, GradNormScratch& scratch,
                     cudaStream_t stream) {
  sum_squares(buffers, max_norm, scratch, stream);
  if (max_norm > 0.f) apply_clip_scale(buffers, scratch, stream);  // <= 0: nothing is scaled
  return download_norm(scratch, stream);
}

void queue_grad_norm(std::span<const DeviceGrads> buffers, float max_norm, GradNormScratch& scratch,
                     cudaStream_t stream) {
  sum_squares(buffers, max_norm, scratch, stream);
}

const float* norm_on_device(const GradNormScratch& scratch) {
  ECMOE_CHECK(scratch.result.size() == 2, "cuda clipping: no norm measured yet");
  return scratch.result.data();
}

const float* clip_scale_on_device(const GradNormScratch& scratch) {
  return norm_on_device(scratch) + 1;
}

float grad_norm(const float* grads, int64_t size, GradNormScratch& scratch, cudaStream_t stream) {
  const DeviceGrads one[] = {{const_cast<float*>(grads), size}};
  return clip_grad_norm(one, 0.f, scratch, stream);  // max_norm 0: measures only
}

double grad_sum_of_squares(const float* grads, int64_t size, GradNormScratch& scratch,
                           cudaStream_t stream) {
  const DeviceGrads one[] = {{const_cast<float*>(grads), size}};
  sum_squares(one, 0.f, scratch, stream);
  double squares = 0.0;
  ECMOE_CUDA_CHECK(cudaMemcpyAsync(&squares, scratch.squares.data(), sizeof(double),
                                   cudaMemcpyDeviceToHost, stream));
  ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return squares;
}

void scale_grads(float* grads, int64_t size, float scale, cudaStream_t stream) {
  if (size == 0 || scale == 1.f) return;  // g·1 = g: the CPU leaves such gradients alone
  launch(scale_by_kernel, blocks_for(size, kThreads), kThreads, 0, stream, grads, size, scale);
}

}  // namespace ecmoe::cuda

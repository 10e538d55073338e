#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/launch.cuh"
#include "cuda/moe_ops.h"
#include "cuda/vector_access.cuh"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;

// The row kernels take V columns at a time (vector_access.cuh; V = 4 needs d % 4 == 0 and
// aligned rows): a block per row, thread i on columns [V·i, V·i + V), then a block's width on.

template <typename T, int V>
__global__ void dispatch_kernel(T* x_slots, const float* x, const int* slot_token, int d) {
  const int64_t s = blockIdx.x;
  const float* src = x + int64_t(slot_token[s]) * d;
  T* dst = x_slots + s * d;
  for (int c = threadIdx.x * V; c < d; c += blockDim.x * V)
    store_floats<V>(dst + c, load_floats<V>(src + c));
}

// dx[t] += each of t's slot rows, in inverse-index order (the CPU's order, so the same bits);
// overwrite: from zeros, dx not read.
template <int V>
__global__ void dispatch_backward_kernel(float* dx, const float* d_slots, const int* token_offsets,
                                         const int* token_slots, int d, bool overwrite) {
  const int64_t t = blockIdx.x;
  const int j0 = token_offsets[t], j1 = token_offsets[t + 1];
  for (int c = threadIdx.x * V; c < d; c += blockDim.x * V) {
    Floats<V> acc = overwrite ? Floats<V>{} : load_floats<V>(dx + t * d + c);
    for (int j = j0; j < j1; ++j) {
      const Floats<V> g = load_floats<V>(d_slots + int64_t(token_slots[j]) * d + c);
#pragma unroll
      for (int i = 0; i < V; ++i) acc.v[i] += g.v[i];
    }
    store_floats<V>(dx + t * d + c, acc);
  }
}

template <int V>
__global__ void combine_kernel(float* y, const float* out, const int* token_offsets,
                               const int* token_slots, const float* slot_gate,
                               const float* residual, int d) {
  const int64_t t = blockIdx.x;
  const int j0 = token_offsets[t], j1 = token_offsets[t + 1];
  for (int c = threadIdx.x * V; c < d; c += blockDim.x * V) {
    Floats<V> acc = {};
    for (int j = j0; j < j1; ++j) {
      const int s = token_slots[j];
      const float gate = slot_gate[s];
      const Floats<V> o = load_floats<V>(out + int64_t(s) * d + c);
#pragma unroll
      for (int i = 0; i < V; ++i) acc.v[i] = fmaf(gate, o.v[i], acc.v[i]);
    }
    if (residual) {
      const Floats<V> r = load_floats<V>(residual + t * d + c);
#pragma unroll
      for (int i = 0; i < V; ++i) acc.v[i] += r.v[i];
    }
    store_floats<V>(y + t * d + c, acc);
  }
}

// One warp per slot: d_out[s] = gate · dy[t]; dgate[s] = <dy[t], out[s]>, each lane summing its
// columns in order and the lanes added in a fixed tree (unless dgate is nullptr: no dot).
template <typename T>
__global__ void combine_backward_kernel(T* d_out, float* dgate, const float* dy, const float* out,
                                        const int* slot_token, const float* slot_gate, int S,
                                        int d) {
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (s >= S) return;  // whole warps leave together
  const float* dyt = dy + int64_t(slot_token[s]) * d;
  const float* o = out + s * d;
  T* dos = d_out + s * d;
  const float g = slot_gate[s];
  float dot = 0.f;
  if (dgate == nullptr) {
    for (int c = lane; c < d; c += 32) dos[c] = store_as(g * dyt[c], dos);
    return;
  }
  for (int c = lane; c < d; c += 32) {
    const float v = dyt[c];
    dos[c] = store_as(g * v, dos);
    dot = fmaf(v, o[c], dot);
  }
  for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_down_sync(0xffffffffu, dot, offset);
  if (lane == 0) dgate[s] = dot;
}

template <typename T, int V>
__global__ void gelu_forward_kernel(T* out, const float* a, int64_t n) {
  for_each_group<V>(n, [&]<int W>(int64_t j) {
    Floats<W> x = load_floats<W>(a + j);
#pragma unroll
    for (int i = 0; i < W; ++i) x.v[i] = x.v[i] * gelu_cdf(x.v[i]);
    store_floats<W>(out + j, x);
  });
}

// da may be dout (in place): each element is read before it is written, by the same thread.
template <typename T, int V>
__global__ void gelu_backward_kernel(T* da, const float* dout, const float* a, int64_t n) {
  for_each_group<V>(n, [&]<int W>(int64_t j) {
    const Floats<W> x = load_floats<W>(a + j);
    Floats<W> g = load_floats<W>(dout + j);
#pragma unroll
    for (int i = 0; i < W; ++i) {
      const float pdf = expf(-0.5f * x.v[i] * x.v[i]);
      g.v[i] = g.v[i] * (gelu_cdf(x.v[i]) + x.v[i] * kInvSqrt2Pi * pdf);
    }
    store_floats<W>(da + j, g);
  });
}

// One thread per row, in the CPU's order (moe/softmax_rows.cpp).
__global__ void softmax_forward_kernel(float* probs, const float* logits, int n, int e) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* z = logits + t * e;
  float* p = probs + t * e;
  float m = z[0];
  for (int i = 1; i < e; ++i) m = fmaxf(m, z[i]);
  float sum = 0.f;
  for (int i = 0; i < e; ++i) sum += (p[i] = expf(z[i] - m));
  const float inv = 1.f / sum;
  for (int i = 0; i < e; ++i) p[i] *= inv;
}

__global__ void softmax_backward_kernel(float* dlogits, const float* dprobs, const float* probs,
                                        int n, int e) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* p = probs + t * e;
  const float* dp = dprobs + t * e;
  float dot = 0.f;
  for (int i = 0; i < e; ++i) dot += p[i] * dp[i];
  float* dz = dlogits + t * e;
  for (int i = 0; i < e; ++i) dz[i] += p[i] * (dp[i] - dot);
}

__device__ int expert_of_slot(const int* expert_offsets, int e, int s) {
  int lo = 0, hi = e;  // the last i with expert_offsets[i] <= s
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (expert_offsets[mid] <= s)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

__global__ void gate_backward_score_kernel(float* dprobs, const float* dgate,
                                           const int* expert_offsets, const int* slot_token, int e,
                                           int S) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= S) return;
  const int i = expert_of_slot(expert_offsets, e, int(s));
  dprobs[int64_t(slot_token[s]) * e + i] += dgate[s];
}

// gate_j = p_j / Z over token t's choices C, as moe/gate_backward.cpp (one thread per token, in
// its order): dp_m += dgate_m / Z - (Σ_j dgate_j p_j) / Z² for m in C.
constexpr int kMaxChoices = 8;
__global__ void gate_backward_renormalized_kernel(float* dprobs, const float* probs,
                                                  const float* dgate, const int* expert_offsets,
                                                  const int* token_offsets, const int* token_slots,
                                                  const int* token_choices, int k, int n, int e) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int* chosen = token_choices + t * k;
  const float* p = probs + t * e;
  float z = 0.f;
  for (int c = 0; c < k; ++c) z += p[chosen[c]];
  float dg[kMaxChoices];
  for (int c = 0; c < k; ++c) dg[c] = 0.f;
  for (int j = token_offsets[t]; j < token_offsets[t + 1]; ++j) {
    const int s = token_slots[j];
    const int expert = expert_of_slot(expert_offsets, e, s);
    for (int c = 0; c < k; ++c)
      if (chosen[c] == expert) dg[c] = dgate[s];
  }
  float weighted = 0.f;
  for (int c = 0; c < k; ++c) weighted += dg[c] * p[chosen[c]];
  for (int c = 0; c < k; ++c) dprobs[t * e + chosen[c]] += dg[c] / z - weighted / (z * z);
}

template <int V>
__global__ void to_bf16_kernel(uint16_t* out, const float* in, int64_t n) {
  for_each_group<V>(n, [&]<int W>(int64_t j) { store_floats<W>(out + j, load_floats<W>(in + j)); });
}

__global__ void jitter_kernel(float* router_x, float* noise, const float* x, int64_t count, Rng rng,
                              uint64_t first, float jitter) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < count;
       j += int64_t(gridDim.x) * blockDim.x) {
    noise[j] = 1.f + jitter * (2.f * rng.uniform(first + uint64_t(j)) - 1.f);
    router_x[j] = x[j] * noise[j];
  }
}

__global__ void add_product_kernel(float* dx, const float* g, const float* noise, int64_t count) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < count;
       j += int64_t(gridDim.x) * blockDim.x)
    dx[j] += g[j] * noise[j];
}

template <typename T>
void dispatch_any(T* x_slots, const float* x, const DevicePlan& plan, int d, cudaStream_t stream) {
  const int S = plan.slot_count();
  if (S == 0 || d == 0) return;
  launch_rows(rows_by_4(d, x_slots, x), dispatch_kernel<T, 4>, dispatch_kernel<T, 1>, S, d, stream,
              x_slots, x, plan.slot_token.data(), d);
}

template <typename T>
void combine_backward_any(T* d_out, float* dgate, const float* dy, const float* out,
                          const DevicePlan& plan, int d, cudaStream_t stream) {
  const int S = plan.slot_count();
  if (S == 0) return;
  launch(combine_backward_kernel<T>, blocks_for(int64_t(S) * 32, kThreads), kThreads, 0, stream,
         d_out, dgate, dy, out, plan.slot_token.data(), plan.slot_gate.data(), S, d);
}

template <typename T>
void gelu_forward_any(T* out, const float* a, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_elementwise(aligned_for_4(out, a), gelu_forward_kernel<T, 4>, gelu_forward_kernel<T, 1>, n,
                     kThreads, stream, out, a, n);
}

template <typename T>
void gelu_backward_any(T* da, const float* dout, const float* a, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_elementwise(aligned_for_4(da, dout, a), gelu_backward_kernel<T, 4>,
                     gelu_backward_kernel<T, 1>, n, kThreads, stream, da, dout, a, n);
}

}  // namespace

void dispatch_forward(float* x_slots, const float* x, const DevicePlan& plan, int d,
                      cudaStream_t stream) {
  dispatch_any(x_slots, x, plan, d, stream);
}
void dispatch_forward(uint16_t* x_slots16, const float* x, const DevicePlan& plan, int d,
                      cudaStream_t stream) {
  dispatch_any(x_slots16, x, plan, d, stream);
}

void dispatch_backward(float* dx, const float* d_slots, const DevicePlan& plan, int d,
                       cudaStream_t stream, bool overwrite) {
  if (plan.n_tokens == 0 || d == 0) return;
  launch_rows(rows_by_4(d, dx, d_slots), dispatch_backward_kernel<4>, dispatch_backward_kernel<1>,
              plan.n_tokens, d, stream, dx, d_slots, plan.token_offsets.data(),
              plan.token_slots.data(), d, overwrite);
}

void combine_forward(float* y, const float* out, const DevicePlan& plan, int d, cudaStream_t stream,
                     const float* residual) {
  if (plan.n_tokens == 0 || d == 0) return;
  launch_rows(rows_by_4(d, y, out, residual), combine_kernel<4>, combine_kernel<1>, plan.n_tokens,
              d, stream, y, out, plan.token_offsets.data(), plan.token_slots.data(),
              plan.slot_gate.data(), residual, d);
}

void combine_backward(float* d_out, float* dgate, const float* dy, const float* out,
                      const DevicePlan& plan, int d, cudaStream_t stream) {
  combine_backward_any(d_out, dgate, dy, out, plan, d, stream);
}
void combine_backward(uint16_t* d_out16, float* dgate, const float* dy, const float* out,
                      const DevicePlan& plan, int d, cudaStream_t stream) {
  combine_backward_any(d_out16, dgate, dy, out, plan, d, stream);
}

void gelu_forward(float* out, const float* a, int64_t n, cudaStream_t stream) {
  gelu_forward_any(out, a, n, stream);
}
void gelu_forward(uint16_t* out, const float* a, int64_t n, cudaStream_t stream) {
  gelu_forward_any(out, a, n, stream);
}
void gelu_backward(float* da, const float* dout, const float* a, int64_t n, cudaStream_t stream) {
  gelu_backward_any(da, dout, a, n, stream);
}
void gelu_backward(uint16_t* da, const float* dout, const float* a, int64_t n,
                   cudaStream_t stream) {
  gelu_backward_any(da, dout, a, n, stream);
}

void softmax_rows_forward(float* probs, const float* logits, int n, int e, cudaStream_t stream) {
  if (n == 0) return;
  launch(softmax_forward_kernel, blocks_for(n, 128), 128, 0, stream, probs, logits, n, e);
}

void softmax_rows_backward(float* dlogits, const float* dprobs, const float* probs, int n, int e,
                           cudaStream_t stream) {
  if (n == 0) return;
  launch(softmax_backward_kernel, blocks_for(n, 128), 128, 0, stream, dlogits, dprobs, probs, n, e);
}

void gate_backward(float* dprobs, const DevicePlan& plan, const float* probs, const float* dgate,
                   cudaStream_t stream) {
  const int S = plan.slot_count(), n = plan.n_tokens, e = plan.n_experts;
  if (plan.gate_kind == GateKind::kConstant || S == 0) return;
  if (plan.gate_kind == GateKind::kScore) {
    launch(gate_backward_score_kernel, blocks_for(S, kThreads), kThreads, 0, stream, dprobs, dgate,
           plan.expert_offsets.data(), plan.slot_token.data(), e, S);
  } else {
    ECMOE_CHECK(plan.choices_per_token <= kMaxChoices, "cuda gate backward: at most ", kMaxChoices,
                " choices per token");
    launch(gate_backward_renormalized_kernel, blocks_for(n, 128), 128, 0, stream, dprobs, probs,
           dgate, plan.expert_offsets.data(), plan.token_offsets.data(), plan.token_slots.data(),
           plan.token_choices.data(), plan.choices_per_token, n, e);
  }
}

void router_jitter(float* router_x, float* noise, const float* x, int64_t count, uint64_t seed,
                   uint64_t first, float jitter, cudaStream_t stream) {
  if (count == 0) return;
  launch(jitter_kernel, blocks_for(count, kThreads), kThreads, 0, stream, router_x, noise, x, count,
         Rng(seed, streams::kRouterJitter), first, jitter);
}

void add_product(float* dx, const float* g, const float* noise, int64_t count,
                 cudaStream_t stream) {
  if (count == 0) return;
  launch(add_product_kernel, blocks_for(count, kThreads), kThreads, 0, stream, dx, g, noise, count);
}

void to_bf16(uint16_t* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_elementwise(aligned_for_4(out, in), to_bf16_kernel<4>, to_bf16_kernel<1>, n, kThreads,
                     stream, out, in, n);
}

}  // namespace ecmoe::cuda

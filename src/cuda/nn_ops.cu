#include <cstddef>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"
#include "cuda/nn_ops.h"
#include "cuda/vector_access.cuh"
#include "nn/layernorm.h"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // a warp per row
constexpr int kColumnThreads = 128;           // columns per block of a column sum
constexpr int kLanes = nn::detail::kLanes;

int row_chunks(int rows) { return (rows + kRowChunk - 1) / kRowChunk; }

// Bits of the largest key (at least 1): the radix sort's end bit.
int key_bits(int max_key) {
  int bits = 1;
  while (bits < 31 && (1 << bits) <= max_key) ++bits;
  return bits;
}

// A warp per row, lanes 0..15 summing as nn/reduce.h's lanes: x[i] into lane i mod 16.
template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const float* inp,
                                         const float* gain, const float* bias, int rows, int dim) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;  // whole warps leave together
  const float* x = inp + r * dim;
  float acc = 0.f;
  if (lane < kLanes)
    for (int i = lane; i < dim; i += kLanes) acc += x[i];
  const float m = combine_lanes16(acc) / float(dim);
  float sq = 0.f;
  if (lane < kLanes)
    for (int i = lane; i < dim; i += kLanes) {
      const float t = x[i] - m;
      sq = fmaf(t, t, sq);
    }
  const float var = combine_lanes16(sq) / float(dim);
  const float s = 1.f / sqrtf(var + nn::kLayerNormEps);
  T* y = out + r * dim;
  for (int i = lane; i < dim; i += 32) y[i] = store_as(fmaf((x[i] - m) * s, gain[i], bias[i]), y);
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = s;
  }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dout · gain, x̂ = (x − mean) · rstd; a warp per
// row, the two means summed as the CPU sums them.
__global__ void layernorm_backward_kernel(float* dinp, const float* dout, const float* inp,
                                          const float* gain, const float* mean, const float* rstd,
                                          int rows, int dim) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;
  const float* x = inp + r * dim;
  const float* dy = dout + r * dim;
  float* dx = dinp + r * dim;
  const float mu = mean[r], rs = rstd[r];
  float sum_g = 0.f, sum_gx = 0.f;
  if (lane < kLanes)
    for (int i = lane; i < dim; i += kLanes) {
      const float xhat = (x[i] - mu) * rs;
      const float g = __fmul_rn(dy[i], gain[i]);  // rounded, as the CPU stores it: never fused
      sum_g += g;
      sum_gx = fmaf(g, xhat, sum_gx);
    }
  const float g_mean = combine_lanes16(sum_g) / float(dim);
  const float gx_mean = combine_lanes16(sum_gx) / float(dim);
  for (int i = lane; i < dim; i += 32) {
    const float xhat = (x[i] - mu) * rs;
    const float g = __fmul_rn(dy[i], gain[i]);
    dx[i] += rs * (g - g_mean - xhat * gx_mean);
  }
}

// Block (chunk, column tile): each column's sum over the chunk's rows, in row order, of dout · x̂
// (dgain) and dout (dbias).
__global__ void layernorm_param_partials_kernel(float* partial_gain, float* partial_bias,
                                                const float* dout, const float* inp,
                                                const float* mean, const float* rstd, int rows,
                                                int dim) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  const int chunk = blockIdx.x;
  const int r0 = chunk * kRowChunk, r1 = min(rows, r0 + kRowChunk);
  float g = 0.f, b = 0.f;
  for (int r = r0; r < r1; ++r) {
    const int64_t at = int64_t(r) * dim + c;
    const float dy = dout[at];
    g = fmaf(dy, (inp[at] - mean[r]) * rstd[r], g);
    b += dy;
  }
  partial_gain[int64_t(chunk) * dim + c] = g;
  partial_bias[int64_t(chunk) * dim + c] = b;
}

// The same for a plain column sum (a bias gradient).
__global__ void column_partials_kernel(float* partial, const float* dout, int rows, int cols) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int chunk = blockIdx.x;
  const int r0 = chunk * kRowChunk, r1 = min(rows, r0 + kRowChunk);
  float b = 0.f;
  for (int r = r0; r < r1; ++r) b += dout[int64_t(r) * cols + c];
  partial[int64_t(chunk) * cols + c] = b;
}

// dst[c] += the chunks' partial sums of column c, added in chunk order.
__global__ void add_partials_kernel(float* dst, const float* partial, int chunks, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float acc = 0.f;
  for (int k = 0; k < chunks; ++k) acc += partial[int64_t(k) * cols + c];
  dst[c] += acc;
}

dim3 partials_grid(int rows, int cols) {
  const int tiles = (cols + kColumnThreads - 1) / kColumnThreads;
  ECMOE_CHECK(tiles <= 65535, "cuda column sums: ", cols, " columns is more than the grid holds");
  return dim3(unsigned(row_chunks(rows)), unsigned(tiles));
}

__global__ void embedding_forward_kernel(float* out, const int* tokens, const float* token_table,
                                         const float* pos_table, int seq_len, int dim) {
  const int64_t r = blockIdx.x;
  const float* tok = token_table + int64_t(tokens[r]) * dim;
  float* o = out + r * dim;
  if (pos_table) {
    const float* pos = pos_table + (r % seq_len) * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = tok[c] + pos[c];
  } else {
    for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = tok[c];
  }
}

__global__ void iota_kernel(int* out, int n) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < n) out[j] = int(j);
}

// Block p of the positions sorted by id: if p starts a run of one id, the table row of that id
// gains the run's rows of dout, in position order (the sort is stable); other blocks leave.
__global__ void embedding_token_grad_kernel(float* dtable, const float* dout, const int* sorted_ids,
                                            const int* sorted_positions, int rows, int dim) {
  const int p = blockIdx.x;
  const int id = sorted_ids[p];
  if (p > 0 && sorted_ids[p - 1] == id) return;  // the whole block: not a run's start
  // The run's end: the first sorted position after p with a larger id (a binary search, so a
  // frequent id costs no long scan). Every thread finds the same q.
  int lo = p + 1, hi = rows;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (sorted_ids[mid] == id)
      lo = mid + 1;
    else
      hi = mid;
  }
  const int q = lo;
  float* dst = dtable + int64_t(id) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = dst[c];
    for (int j = p; j < q; ++j) acc += dout[int64_t(sorted_positions[j]) * dim + c];
    dst[c] = acc;
  }
}

// Block t: dpos[t] gains rows t, t + seq_len, t + 2·seq_len, ... of dout, in that order.
__global__ void embedding_pos_grad_kernel(float* dpos, const float* dout, int batch, int seq_len,
                                          int dim) {
  const int t = blockIdx.x;
  float* dst = dpos + int64_t(t) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = dst[c];
    for (int b = 0; b < batch; ++b) acc += dout[(int64_t(b) * seq_len + t) * dim + c];
    dst[c] = acc;
  }
}

// V elements at a time where the pointers allow (cuda/vector_access.cuh).
template <int V>
__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for_each_group<V>(n, [&]<int W>(int64_t j) {
    Floats<W> x = load_floats<W>(a + j);
    const Floats<W> y = load_floats<W>(b + j);
#pragma unroll
    for (int i = 0; i < W; ++i) x.v[i] += y.v[i];
    store_floats<W>(out + j, x);
  });
}

template <int V>
__global__ void add_twice_kernel(float* da, float* db, const float* dout, int64_t n) {
  for_each_group<V>(n, [&]<int W>(int64_t j) {
    const Floats<W> g = load_floats<W>(dout + j);
    Floats<W> a = load_floats<W>(da + j), b = load_floats<W>(db + j);
#pragma unroll
    for (int i = 0; i < W; ++i) a.v[i] += g.v[i], b.v[i] += g.v[i];
    store_floats<W>(da + j, a);
    store_floats<W>(db + j, b);
  });
}

__global__ void broadcast_rows_kernel(float* out, const float* bias, int cols) {
  float* o = out + int64_t(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = bias[c];
}

// A block per row, V columns at a time (V = 4: dim % 4 == 0, aligned rows).
template <int V>
__global__ void gather_rows_kernel(float* out, const float* in, const int* index, int dim) {
  const int64_t j = blockIdx.x;
  const float* src = in + int64_t(index[j]) * dim;
  float* dst = out + j * dim;
  for (int c = threadIdx.x * V; c < dim; c += blockDim.x * V)
    store_floats<V>(dst + c, load_floats<V>(src + c));
}

template <int V>
__global__ void scatter_add_rows_kernel(float* dst, const float* src, const int* index, int dim) {
  const int64_t j = blockIdx.x;
  float* d = dst + int64_t(index[j]) * dim;
  const float* s = src + j * dim;
  for (int c = threadIdx.x * V; c < dim; c += blockDim.x * V) {
    Floats<V> acc = load_floats<V>(d + c);
    const Floats<V> add = load_floats<V>(s + c);
#pragma unroll
    for (int i = 0; i < V; ++i) acc.v[i] += add.v[i];
    store_floats<V>(d + c, acc);
  }
}

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int rows, int dim, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  launch(layernorm_forward_kernel<float>, blocks_for(rows, kRowsPerBlock), kThreads, 0, stream, out,
         mean, rstd, inp, gain, bias, rows, dim);
}
void layernorm_forward(uint16_t* out16, float* mean, float* rstd, const float* inp,
                       const float* gain, const float* bias, int rows, int dim,
                       cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  launch(layernorm_forward_kernel<uint16_t>, blocks_for(rows, kRowsPerBlock), kThreads, 0, stream,
         out16, mean, rstd, inp, gain, bias, rows, dim);
}

void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int rows, int dim, ColumnSumScratch& scratch, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  launch(layernorm_backward_kernel, blocks_for(rows, kRowsPerBlock), kThreads, 0, stream, dinp,
         dout, inp, gain, mean, rstd, rows, dim);
  const int chunks = row_chunks(rows);
  const int64_t per = int64_t(chunks) * dim;
  scratch.partials.resize(size_t(2 * per));
  float* partial_gain = scratch.partials.data();
  float* partial_bias = partial_gain + per;
  launch(layernorm_param_partials_kernel, partials_grid(rows, dim), kColumnThreads, 0, stream,
         partial_gain, partial_bias, dout, inp, mean, rstd, rows, dim);
  launch(add_partials_kernel, blocks_for(dim, kColumnThreads), kColumnThreads, 0, stream, dgain,
         partial_gain, chunks, dim);
  launch(add_partials_kernel, blocks_for(dim, kColumnThreads), kColumnThreads, 0, stream, dbias,
         partial_bias, chunks, dim);
}

void embedding_forward(float* out, const int* tokens, const float* token_table,
                       const float* pos_table, const nn::EmbeddingConfig& cfg,
                       cudaStream_t stream) {
  const int rows = cfg.batch * cfg.seq_len;
  if (rows == 0 || cfg.dim == 0) return;
  launch(embedding_forward_kernel, rows, row_threads(cfg.dim), 0, stream, out, tokens, token_table,
         pos_table, cfg.seq_len, cfg.dim);
}

void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                        const int* tokens, const nn::EmbeddingConfig& cfg,
                        EmbeddingScratch& scratch, cudaStream_t stream) {
  const int rows = cfg.batch * cfg.seq_len, dim = cfg.dim;
  if (rows == 0 || dim == 0) return;
  scratch.positions.resize(rows);
  scratch.sorted_ids.resize(rows);
  scratch.sorted_positions.resize(rows);
  launch(iota_kernel, blocks_for(rows, kThreads), kThreads, 0, stream, scratch.positions.data(),
         rows);
  // Stable: an id's positions keep their order.
  const int end_bit = key_bits(cfg.vocab_size - 1);
  size_t temp_bytes = 0;
  ECMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, tokens, scratch.sorted_ids.data(), scratch.positions.data(),
      scratch.sorted_positions.data(), rows, 0, end_bit, stream));
  scratch.sort_temp.resize(temp_bytes);
  ECMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      scratch.sort_temp.data(), temp_bytes, tokens, scratch.sorted_ids.data(),
      scratch.positions.data(), scratch.sorted_positions.data(), rows, 0, end_bit, stream));
  launch(embedding_token_grad_kernel, rows, row_threads(dim), 0, stream, dtoken_table, dout,
         scratch.sorted_ids.data(), scratch.sorted_positions.data(), rows, dim);
  if (dpos_table) {
    launch(embedding_pos_grad_kernel, cfg.seq_len, row_threads(dim), 0, stream, dpos_table, dout,
           cfg.batch, cfg.seq_len, dim);
  }
}

void residual_forward(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_elementwise(aligned_for_4(out, a, b), add_kernel<4>, add_kernel<1>, n, kThreads, stream,
                     out, a, b, n);
}

void residual_backward(float* da, float* db, const float* dout, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_elementwise(aligned_for_4(da, db, dout), add_twice_kernel<4>, add_twice_kernel<1>, n,
                     kThreads, stream, da, db, dout, n);
}

void add_inplace(float* acc, const float* x, int64_t n, cudaStream_t stream) {
  residual_forward(acc, acc, x, n, stream);
}

void broadcast_rows(float* out, const float* bias, int rows, int cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  launch(broadcast_rows_kernel, rows, row_threads(cols), 0, stream, out, bias, cols);
}

void add_column_sums(float* dbias, const float* dout, int rows, int cols, ColumnSumScratch& scratch,
                     cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int chunks = row_chunks(rows);
  scratch.partials.resize(size_t(chunks) * cols);
  launch(column_partials_kernel, partials_grid(rows, cols), kColumnThreads, 0, stream,
         scratch.partials.data(), dout, rows, cols);
  launch(add_partials_kernel, blocks_for(cols, kColumnThreads), kColumnThreads, 0, stream, dbias,
         scratch.partials.data(), chunks, cols);
}

void gather_rows(float* out, const float* in, const int* index, int m, int dim,
                 cudaStream_t stream) {
  if (m == 0 || dim == 0) return;
  launch_rows(rows_by_4(dim, out, in), gather_rows_kernel<4>, gather_rows_kernel<1>, m, dim, stream,
              out, in, index, dim);
}

void scatter_add_rows(float* dst, const float* src, const int* index, int m, int dim,
                      cudaStream_t stream) {
  if (m == 0 || dim == 0) return;
  launch_rows(rows_by_4(dim, dst, src), scatter_add_rows_kernel<4>, scatter_add_rows_kernel<1>, m,
              dim, stream, dst, src, index, dim);
}

}  // namespace ecmoe::cuda

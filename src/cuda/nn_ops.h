// The dense model's row and elementwise ops on the GPU (LayerNorm, embeddings, residual, bias,
// the loss head's row gather), each forward beside its backward, each the counterpart of the nn/
// op named in its comment and tested against it (tests/cuda/test_cuda_nn_ops.cpp). All run on
// `stream`; pointers are device pointers; sizes are the CPU op's. Token ids and targets are
// checked on the host (nn::check_embedding_tokens, nn::count_targets) before they are uploaded:
// the kernels trust them.
//
// Determinism: no floating-point atomics. A row's sums run in nn/reduce.h's order (16 running
// sums, the same tree). Sums over rows (gain, bias) add fixed chunks of kRowChunk rows in row
// order, then the chunks in chunk order: the same bits run to run, and the CPU's bits when there
// is one chunk (the CPU adds every row in order). The embedding gradients add each table row's
// positions in position order, as the CPU does.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "nn/embedding.h"

namespace ecmoe::cuda {

// Rows per partial sum of a column sum over rows (gain, bias): a constant, so the order of the
// additions depends only on the number of rows.
inline constexpr int kRowChunk = 64;

// Scratch of the column sums over rows: [2, chunks, cols] partial sums.
struct ColumnSumScratch {
  DeviceVec<float> partials;
};

// nn::layernorm_forward. inp [rows, dim], gain, bias [dim] -> out [rows, dim], mean, rstd [rows].
// A warp per row: mean, then the squared deviations (two passes, as the CPU), each summed in
// nn/reduce.h's order.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int rows, int dim, cudaStream_t stream);
// The same with the output written in bf16 only (each element rounded once: the bits of
// cuda::to_bf16 over the fp32 output), for a GEMM that reads only its bf16 copy.
void layernorm_forward(uint16_t* out16, float* mean, float* rstd, const float* inp,
                       const float* gain, const float* bias, int rows, int dim,
                       cudaStream_t stream);
// nn::layernorm_backward: dinp [rows, dim], dgain, dbias [dim] (+=). dinp: a warp per row;
// dgain, dbias: column sums in row chunks (above).
void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int rows, int dim, ColumnSumScratch& scratch, cudaStream_t stream);

// embedding_backward's scratch: the positions sorted by token id.
struct EmbeddingScratch {
  DeviceVec<int> positions, sorted_ids, sorted_positions;
  DeviceVec<unsigned char> sort_temp;
};

// nn::embedding_forward. tokens [batch, seq_len] (each in [0, vocab)), token_table [vocab, dim],
// pos_table [>= seq_len, dim] or nullptr -> out [batch, seq_len, dim]. A block per row; bitwise
// the CPU's.
void embedding_forward(float* out, const int* tokens, const float* token_table,
                       const float* pos_table, const nn::EmbeddingConfig& cfg, cudaStream_t stream);
// nn::embedding_backward: dtoken_table [vocab, dim] (+=), dpos_table (+=, unless nullptr). The
// positions are sorted by token id (CUB's stable radix sort, so each id's positions stay in
// order); a block per distinct id adds its rows in position order, and a block per position t
// adds rows t, t + seq_len, ... in order: bitwise the CPU's.
void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                        const int* tokens, const nn::EmbeddingConfig& cfg,
                        EmbeddingScratch& scratch, cudaStream_t stream);

// nn::residual_forward: out [n] = a + b (out may alias a or b).
void residual_forward(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
// nn::residual_backward: da, db [n] += dout.
void residual_backward(float* da, float* db, const float* dout, int64_t n, cudaStream_t stream);
// nn::add_inplace: acc [n] += x.
void add_inplace(float* acc, const float* x, int64_t n, cudaStream_t stream);

// nn::linear_forward's bias: out [rows, cols] = bias [cols] in every row (the GEMM then adds
// x·W with beta 1, as on the CPU).
void broadcast_rows(float* out, const float* bias, int rows, int cols, cudaStream_t stream);
// nn::add_column_sums: dbias [cols] += Σ over rows of dout [rows, cols], in row chunks (above).
void add_column_sums(float* dbias, const float* dout, int rows, int cols, ColumnSumScratch& scratch,
                     cudaStream_t stream);

// model/lm_head.cpp's gather of the counted rows: out [m, dim] = in [index[j]] for j < m.
void gather_rows(float* out, const float* in, const int* index, int m, int dim,
                 cudaStream_t stream);
// Its adjoint: dst [index[j]] += src [j] for j < m (the indices distinct, so no row is written
// twice).
void scatter_add_rows(float* dst, const float* src, const int* index, int m, int dim,
                      cudaStream_t stream);

}  // namespace ecmoe::cuda

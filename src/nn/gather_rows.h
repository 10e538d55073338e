// Row gather and its adjoint: the language-model head takes only the counted rows of the hidden
// states through its output GEMM (model/lm_head.h), and its gradient goes back to those rows.
#pragma once

namespace ecmoe::nn {

// dst [m, dim] = src[rows[j]] for j < m; src [>= max(rows) + 1, dim].
void gather_rows(float* dst, const float* src, const int* rows, int m, int dim);
// The adjoint: dst[rows[j]] += src[j] for j < m. The rows must be distinct (each destination row
// has one writer, so any thread may own any row and the result is the same at any thread count).
void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim);

}  // namespace ecmoe::nn

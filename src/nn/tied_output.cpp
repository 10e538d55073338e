// h is [N, C], table is [V, C], logits is [N, V]
#include "nn/tied_output.h"

#include "core/gemm.h"

namespace ecmoe::nn {

void tied_output_forward(float* logits, const float* h, const float* table, const LinearShape& s,
                         Precision precision) {
  gemm(in_precision(make_gemm(false, true, s.rows, s.out_dim, s.in_dim, h, table, logits),
                    precision));
}

void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                          const float* table, const LinearShape& s, Precision precision) {
  if (dh)  // dh += dlogits · E
    gemm(in_precision(make_gemm(false, false, s.rows, s.in_dim, s.out_dim, dlogits, table, dh, 1.f),
                      precision));
  if (dtable)  // dE += dlogitsᵀ · h
    gemm(in_precision(make_gemm(true, false, s.out_dim, s.in_dim, s.rows, dlogits, h, dtable, 1.f),
                      precision));
}

}  // namespace ecmoe::nn

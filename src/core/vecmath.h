// Elementwise math whose result for an element never depends on its position in the array: every
// element, tails included, goes through the same vector routine (glibc's libmvec), so results are
// identical however a loop is split across threads.
#pragma once
#include <cstdint>

namespace ecmoe {

void vec_erf(const float* in, float* out, int64_t n);
void vec_exp(const float* in, float* out, int64_t n);

// Σ a[i]·b[i] in a fixed order that vectorises: 16 running sums (element i into sum i mod 16),
// then the 16 added pairwise in a fixed tree. The result depends only on the inputs, never on
// the thread count or on the CPU's vector width.
float dot_fixed(const float* a, const float* b, int64_t n);

}  // namespace ecmoe

// Elementwise math whose result for an element never depends on its position in the array: every
// element, tails included, goes through the same vector routine (glibc's libmvec), so results are
// identical however a loop is split across threads.
#pragma once
#include <cstdint>

namespace ecmoe {

void vec_erf(const float* in, float* out, int64_t n);
void vec_exp(const float* in, float* out, int64_t n);

}  // namespace ecmoe

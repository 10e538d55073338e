// How a backward op puts an input gradient (linear's dinp, attention's dqkv, an MoE layer's dx)
// into the caller's buffer: added to what the buffer holds (several paths summing into one
// gradient), or written over it (the buffer's first writer: the caller zeroes nothing first, and
// a device backend need not read it; the values of adding to zeros). Weight and bias gradients
// are always added to.
#pragma once

namespace ecmoe::nn {

enum class GradWrite { kAdd, kOverwrite };

}  // namespace ecmoe::nn

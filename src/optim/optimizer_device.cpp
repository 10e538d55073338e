// Clipping a gradient of which one part is on a device and the rest on the host: clip_grad_norm's
// own steps (optim/grad_clip.h), with the device's part through its two methods.
#include "optim/optimizer_device.h"

#include <cmath>

#include "optim/grad_clip.h"

namespace ecmoe {

float clip_grad_norm(OptimizerDevice& device, std::span<FlatBuffer* const> host, float max_norm) {
  double squares = 0.0;
  squares += device.grad_sum_of_squares();
  for (const FlatBuffer* g : host) squares += grad_sum_of_squares(*g);
  const float norm = float(std::sqrt(squares));
  const float scale = clip_scale(norm, max_norm);
  device.scale_grads(scale);
  for (FlatBuffer* g : host) scale_grads(*g, scale);
  return norm;
}

}  // namespace ecmoe

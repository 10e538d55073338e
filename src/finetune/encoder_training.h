// The encoder's side of fine-tuning: its parameters, gradients and AdamW state where the model
// computes, on the host (FlatBuffers and AdamW, as always) or on a TrainDevice (the model's dense
// ops and MoE layers moved to it, the state in its OptimizerDevice: `finetune --device cuda`), and
// what a step and an evaluation do with them. The task head stays on the host: clipping takes its
// gradients as the rest of one gradient, so both paths clip exactly as clip_grad_norm({encoder,
// head}) does, and the host device (host_train_device()) fine-tunes bitwise as the host path.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>

#include "core/tensor_table.h"
#include "model/transformer.h"
#include "nn/backend.h"
#include "optim/adamw.h"
#include "optim/optimizer_device.h"
#include "train/train_device.h"

namespace ecmoe::finetune {

class EncoderTraining {
 public:
  // Starts from `params` (the model's table) with AdamW afresh. With a device: sets the model's
  // backends to it (device->nn, device->moe) and loads the parameters there. The model and the
  // device must outlive this.
  EncoderTraining(Transformer& model, const FlatBuffer& params, const AdamWConfig& config,
                  const TrainDevice* device);

  // At the table's offsets, in the model's dense backend's memory: what the model's
  // forward_hidden_on_backend / backward_from_hidden_on_backend take.
  float* params();
  float* grads();
  void zero_grads();
  // optim/grad_clip.h's clip_grad_norm over the encoder's gradients and `head` as one gradient
  // (encoder first); returns the norm before clipping.
  float clip_grad_norm(FlatBuffer& head, float max_norm);
  void adamw_step(float lr);
  // The parameters to the host (`out`: the model's table), and from it (after training: the kept
  // ones, to be evaluated; the AdamW state is left as it is).
  void copy_params_to(FlatBuffer& out);
  void set_params(const FlatBuffer& params);

 private:
  nn::Backend& backend_;
  int64_t floats_;
  // On the host: the buffers and the optimizer themselves.
  std::optional<FlatBuffer> params_, grads_;
  std::optional<AdamW> adam_;
  // On a device.
  std::unique_ptr<OptimizerDevice> device_;
};

}  // namespace ecmoe::finetune

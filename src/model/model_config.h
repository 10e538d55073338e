// Configuration of a transformer built from MoE layers: an encoder (bidirectional attention,
// masked-LM objective) or a decoder (causal attention, next-token objective).
#pragma once
#include <string>

#include "moe/moe_config.h"

namespace ecmoe {

enum class ModelKind { kEncoder, kDecoder };
ModelKind parse_model_kind(const std::string& name);  // "encoder" | "decoder"
std::string model_kind_name(ModelKind kind);

struct ModelConfig {
  ModelKind kind = ModelKind::kEncoder;
  int vocab_size = 8000;
  int seq_len = 128;  // maximum sequence length (learned positions)
  int d_model = 256;
  int n_layers = 4;
  int n_heads = 4;
  int d_ff = 1024;
  // Layer l's FFN is an MoE layer when l % moe_every == moe_every - 1 (every other layer by
  // default: layers 1, 3, ...); the others are dense FFNs through the same code path.
  int moe_every = 2;
  MoeConfig moe;  // router and its options; d_model and d_ff are taken from above
  float init_std = 0.02f;
  // Arithmetic of the GEMMs (attention, experts, output layer): fp32, or bf16 operands with fp32
  // accumulation (mixed precision; parameters, gradients, LayerNorm, softmax, router and loss stay
  // fp32). Not part of the architecture: a checkpoint loads in either. The training config's
  // top-level `precision` key.
  Precision precision = Precision::kFp32;

  bool is_moe_layer(int layer) const;
  MoeConfig ffn_config(int layer) const;  // the MoE config (dense router for non-MoE layers)
  int head_dim() const { return d_model / n_heads; }
  void validate() const;  // throws ecmoe::Error naming the bad field
};

}  // namespace ecmoe

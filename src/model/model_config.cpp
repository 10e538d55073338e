#include "model/model_config.h"

#include "core/error.h"

namespace ecmoe {

ModelKind parse_model_kind(const std::string& name) {
  if (name == "encoder") return ModelKind::kEncoder;
  if (name == "decoder") return ModelKind::kDecoder;
  fail("unknown model kind '", name, "' (expected encoder or decoder)");
}

std::string model_kind_name(ModelKind kind) {
  return kind == ModelKind::kEncoder ? "encoder" : "decoder";
}

bool ModelConfig::is_moe_layer(int layer) const {
  return moe_every > 0 && layer % moe_every == moe_every - 1;
}

MoeConfig ModelConfig::ffn_config(int layer) const {
  MoeConfig c = moe;
  c.d_model = d_model;
  c.d_ff = d_ff;
  if (!is_moe_layer(layer)) {
    c = MoeConfig{};
    c.router = RouterKind::kDense;
    c.d_model = d_model;
    c.d_ff = d_ff;
    c.n_experts = 1;
  }
  c.precision = precision;
  return c;
}

void ModelConfig::validate() const {
  ECMOE_CHECK(vocab_size > 7, "model: vocab_size must be > 7 (special tokens), got ", vocab_size);
  ECMOE_CHECK(seq_len > 0, "model: seq_len must be positive, got ", seq_len);
  ECMOE_CHECK(d_model > 0, "model: d_model must be positive, got ", d_model);
  ECMOE_CHECK(n_layers > 0, "model: n_layers must be positive, got ", n_layers);
  ECMOE_CHECK(n_heads > 0 && d_model % n_heads == 0, "model: n_heads (", n_heads,
              ") must divide d_model (", d_model, ")");
  ECMOE_CHECK(d_ff > 0, "model: d_ff must be positive, got ", d_ff);
  ECMOE_CHECK(moe_every >= 0, "model: moe_every must be >= 0 (0 = no MoE layers)");
  ECMOE_CHECK(init_std > 0.f, "model: init_std must be positive");
  // Every layer's FFN is one of two configs (MoE or dense), so each is checked once: a loop over
  // layers would take minutes for an absurd n_layers before the memory check refuses it.
  const int first_moe = moe_every - 1;
  if (moe_every > 0 && first_moe < n_layers) ffn_config(first_moe).validate();
  if (moe_every != 1) ffn_config(0).validate();  // layer 0 is dense unless every layer is MoE
}

}  // namespace ecmoe

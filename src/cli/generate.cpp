// `ecmoe generate`: text from a decoder checkpoint, one token at a time with a KV cache
// (model/kv_decoder.h), printed as it comes, then tokens/s. Expert-choice checkpoints generate
// with their threshold cutoffs (docs/causal.md); batch expert choice itself cannot decode.
// `--device cuda` runs the decoder's steps on the GPU (the `--device cuda` of training,
// cli/train_device.h: its dense backend and MoE backends), the KV cache there too; sampling stays
// on the host.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "core/timer.h"
#include "data/decode_stream.h"
#include "data/tokenizer.h"
#include "model/kv_decoder.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "train/checkpoint.h"

namespace ecmoe::cli {

namespace {
struct GenerateArgs {
  std::string checkpoint;
  std::string prompt;
  std::string tokenizer;
  std::string router;
  std::string device = "cpu";
  int max_tokens = 64;
  SamplingConfig sampling;
  uint64_t seed = 0;
  bool stop_at_eos = true;
};

// The router generation uses: a causal one, expert choice replaced by its thresholds.
RouterKind generation_router(const TrainConfig& config, const std::string& asked) {
  const RouterKind trained = config.model.moe.router;
  if (asked.empty())
    return trained == RouterKind::kExpertChoice ? RouterKind::kExpertThreshold : trained;
  const RouterKind r = parse_router_kind(asked);
  ECMOE_CHECK(r != RouterKind::kExpertChoice && r != RouterKind::kExpertChoiceCapped,
              "generate --router ", asked,
              ": batch expert choice cannot generate token by token (each expert's choice needs "
              "the future); use expert_threshold");
  ECMOE_CHECK(r == trained || (router_has_cutoffs(r) && router_has_cutoffs(trained)),
              "generate --router: a checkpoint trained with ", router_name(trained),
              " cannot generate with ", router_name(r));
  return r;
}
}  // namespace

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a decoder checkpoint");
  auto args = std::make_shared<GenerateArgs>();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file")->required();
  cmd->add_option("--prompt", args->prompt, "Text to continue")->required();
  cmd->add_option("--max-tokens", args->max_tokens,
                  "Tokens to generate at most (fewer if the model's context fills up)")
      ->capture_default_str();
  cmd->add_option("--temperature", args->sampling.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "Sample among the k most likely (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--router", args->router,
                  "Router to generate with (default: the checkpoint's; expert_threshold for an "
                  "expert-choice checkpoint)");
  cmd->add_option("--device", args->device,
                  "Where the decoder runs: cpu, or cuda (an NVIDIA GPU, the KV cache there too; "
                  "needs a build with -DECMOE_CUDA=ON, docs/cuda.md)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Tokenizer model (default: the one recorded in the checkpoint)");
  cmd->callback([args] {
    require_one_process("generate");
    ECMOE_CHECK(args->max_tokens >= 1, "generate --max-tokens must be at least 1, got ",
                args->max_tokens);
    args->sampling.validate();
    const TrainDevice* device = train_device(args->device);  // before anything is read
    const Checkpoint checkpoint = Checkpoint::open(args->checkpoint);
    const TrainConfig& config = checkpoint.config();
    ECMOE_CHECK(config.model.kind == ModelKind::kDecoder, "generate: '", args->checkpoint,
                "' is an encoder (masked LM); generation needs a decoder");
    ModelConfig model_config = config.model;
    model_config.moe.router = generation_router(config, args->router);
    const Transformer model(model_config);
    FlatBuffer params(model.table()), state(model.state_table());
    checkpoint.load_params(params);
    model.init_state(state);
    const bool calibrated = checkpoint.load_router_state(state);
    ECMOE_CHECK(model_config.moe.router != RouterKind::kExpertThreshold || calibrated,
                "generate: '", args->checkpoint,
                "' has no threshold cutoffs (older checkpoint): run `ecmoe calibrate` first");
    const data::Tokenizer tokenizer =
        load_checkpoint_tokenizer(checkpoint, args->tokenizer, "--tokenizer PATH");
    const std::vector<int> prompt = tokenizer.encode(args->prompt);
    ECMOE_CHECK(!prompt.empty(), "generate: the prompt is empty");
    ECMOE_CHECK(int(prompt.size()) < model_config.seq_len, "generate: the prompt has ",
                prompt.size(), " tokens; the model reads at most ", model_config.seq_len);

    KvDecoder decoder = device ? KvDecoder(model, params, state, *device->nn, device->moe)
                               : KvDecoder(model, params, state);
    const Rng rng(args->seed, streams::kGenerate);
    data::DecodeStream text(tokenizer, prompt);
    std::size_t generated = 0;
    bool context_full = false;
    std::printf("%s", args->prompt.c_str());
    std::fflush(stdout);
    const double t0 = now_seconds();
    const std::vector<float>* logits = nullptr;
    for (int id : prompt) logits = &decoder.step(id);
    const double t_prompt = now_seconds();
    while (int(generated) < args->max_tokens) {
      const int next = sample_token(*logits, args->sampling, rng.uniform(generated));
      if (next == data::kEosId) break;
      ++generated;
      const std::string fresh = text.push(next);
      if (!fresh.empty()) {
        std::fwrite(fresh.data(), 1, fresh.size(), stdout);
        std::fflush(stdout);
      }
      if (decoder.position() >= model_config.seq_len) {
        context_full = int(generated) < args->max_tokens;
        break;
      }
      logits = &decoder.step(next);
    }
    const double t1 = now_seconds();
    // The text ends with its own line, flushed before the statistics go to stderr: piped through
    // `2>&1`, the two would otherwise share a line.
    std::printf("\n");
    std::fflush(stdout);
    if (context_full)
      std::fprintf(stderr,
                   "generate: stopped after %zu of --max-tokens %d: the model's context of %d "
                   "tokens (prompt included) is full\n",
                   generated, args->max_tokens, model_config.seq_len);
    std::fprintf(stderr,
                 "%zu tokens in %.3f s (%.1f tokens/s; prompt of %zu tokens in %.3f s), router "
                 "%s, device %s\n",
                 generated, t1 - t_prompt,
                 (t1 - t_prompt) > 0 ? double(generated) / (t1 - t_prompt) : 0.0, prompt.size(),
                 t_prompt - t0, router_name(model_config.moe.router).c_str(), decoder.device());
  });
}

}  // namespace ecmoe::cli

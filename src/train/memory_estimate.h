// What a run needs in memory, computed from its config before anything is allocated, so that a
// size that cannot fit is one line naming the key instead of std::bad_alloc (or minutes of work
// first). Counts follow the real buffers (model/transformer.cpp, moe/moe_layer.cpp,
// model/lm_head.cpp, core/tensor_table.h); every size is a double (bytes), so no product of
// absurd sizes overflows: an unrepresentable size is simply too large.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "moe/moe_config.h"
#include "train/train_config.h"

namespace ecmoe {

struct MemoryEstimate {
  double parameters = 0;   // parameters (64-byte aligned tensors) and router state
  double gradients = 0;    // training only
  double optimizer = 0;    // AdamW's two moments, training only
  double activations = 0;  // what forward keeps for backward, and backward's temporaries
  // A GPU's scratch on top (on_device): the attention's bf16 copies and score gradients, the
  // tied output's bf16 gradient, cuBLAS's workspaces (cuda/attention.cu, cuda/linear.cu).
  double device_scratch = 0;
  double total() const { return parameters + gradients + optimizer + activations + device_scratch; }
};

// Training (`training`: parameters, gradients, AdamW, forward and backward over a micro-batch of
// batch_size / grad_accum sequences, and evaluation forwards over eval_batch_size() sequences with
// the same model), or evaluation alone (parameters and forward activations over eval_batch_size()
// sequences). config.model.vocab_size must be the real one (not 0). `on_device`: the run is on a
// GPU, whose backend needs scratch the CPU's does not.
MemoryEstimate estimate_memory(const TrainConfig& config, bool training = true,
                               bool on_device = false);

// One MoE layer run alone (bench layer): its parameters, gradients and the activations of a
// training forward and backward over n_tokens tokens.
MemoryEstimate estimate_moe_layer_memory(const MoeConfig& config, double n_tokens);

// Bytes the machine can still give this process: /proc/meminfo's MemAvailable, else sysconf's
// available pages.
double available_memory_bytes();

// "1.5 GB", "23 GB", "3.2 TB", beyond petabytes "2.4e+30 B".
std::string format_bytes(double bytes);

// Throws one line when estimate_memory(config, training) exceeds the available memory, naming
// the keys responsible (those whose default would make it fit, else the largest contributors),
// the bytes needed by part and the bytes available; in training, also the fewest micro-batches
// (grad_accum) that would fit the same batch, if any. `key_names` renames keys in the message
// (e.g. {"eval.batch_size", "--batch-size"} when a command-line option set it).
// `device`: check against that much memory of a device instead (e.g. a GPU's free memory),
// named in the message ("GPU memory").
struct DeviceMemory {
  double bytes = 0;
  std::string name;
};
void check_memory(const TrainConfig& config, bool training,
                  const std::vector<std::pair<std::string, std::string>>& key_names = {},
                  const DeviceMemory* device = nullptr);

// check_memory for evaluating a run's checkpoint (eval, calibrate) with `--batch-size`
// (0: the run's evaluation batch size); `device`: against that device's memory, as check_memory.
void check_eval_memory(const TrainConfig& config, int batch_size_option,
                       const DeviceMemory* device = nullptr);

// Throws one line when `bytes` exceed the available memory (device: that device's instead):
// "<what> needs <bytes> of memory (<parts>), more than the <available> available" (no
// parenthesis when `parts` is empty).
void check_bytes_fit(double bytes, const std::string& what, const std::string& parts = "",
                     const DeviceMemory* device = nullptr);

// The same for one MoE layer (bench layer); `what` names the sizes ("--tokens 4096, --d-model
// 1000000, ..."). On a GPU (`device`), `device_scratch` is what the benchmark allocates there
// beside the layer.
void check_moe_layer_memory(const MoeConfig& config, double n_tokens, const std::string& what,
                            double device_scratch = 0, const DeviceMemory* device = nullptr);

// The routing slots of one MoE layer over n tokens (expert choice: capacity·n; token choice at
// most choices·n; dense and hash: n).
double moe_slot_count(const MoeConfig& c, double n, bool training);

}  // namespace ecmoe

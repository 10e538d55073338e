// Expert-sharded training state and its checkpoint under P ranks:
//   each rank stores its own experts only (parameters, gradients and AdamW moments), so the
//   ranks together hold each expert once and everything else P times;
//   a checkpoint written by P ranks (experts gathered to rank 0) is byte for byte the file one
//   process writes from the whole model's state, and loading it gives each rank its own rows back.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "mpi_test_util.h"
#include "optim/adamw.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"

namespace ecmoe {
namespace {

using mpi_test::comm;

ModelConfig sharded_config() {
  ModelConfig c = testing::tiny_config(ModelKind::kDecoder, RouterKind::kExpertChoice);
  c.n_layers = 2;
  c.moe_every = 1;  // both FFNs are MoE layers
  return c;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The rank's part of a whole buffer, into a buffer of the rank's (sharded) table.
void copy_own_part(const FlatBuffer& whole, FlatBuffer& mine) {
  for (const TensorSpec& spec : mine.table().specs())
    std::memcpy(mine.get(spec.name), whole.get(spec.name) + spec.shard_offset(),
                sizeof(float) * size_t(spec.numel()));
}

void expect_own_part(const FlatBuffer& whole, const FlatBuffer& mine, const char* what) {
  for (const TensorSpec& spec : mine.table().specs())
    EXPECT_EQ(0, std::memcmp(mine.get(spec.name), whole.get(spec.name) + spec.shard_offset(),
                             sizeof(float) * size_t(spec.numel())))
        << what << " " << spec.name << " on rank " << comm().rank();
}

TEST(MpiShards, EachExpertIsStoredOnceAcrossTheRanks) {
  const int P = comm().size();
  const ModelConfig c = sharded_config();
  const Transformer whole(c), mine(c, &comm());
  int64_t replicated = 0;
  for (const TensorSpec& spec : mine.table().specs()) {
    const TensorSpec& full = whole.table().spec(spec.name);
    EXPECT_EQ(spec.model_shape(), full.shape) << spec.name;
    if (!spec.sharded()) {
      replicated += spec.numel();
      continue;
    }
    EXPECT_NE(spec.name.find("ffn.experts."), std::string::npos) << spec.name;
    EXPECT_EQ(spec.shape[0], c.moe.n_experts / P) << spec.name;
    EXPECT_EQ(spec.shard_begin, int64_t(c.moe.n_experts / P) * comm().rank()) << spec.name;
  }
  std::vector<int64_t> stored = {mine.table().parameter_count()};
  comm().allreduce_sum(std::span<int64_t>(stored));
  EXPECT_EQ(stored[0], whole.table().parameter_count() + (P - 1) * replicated);
  EXPECT_EQ(mine.table().model_parameter_count(), whole.table().parameter_count());
  if (P > 1) {
    EXPECT_LT(mine.table().parameter_count(), whole.table().parameter_count());
  }
}

TEST(MpiShards, CheckpointOfShardsIsTheWholeModelsFile) {
  const ModelConfig c = sharded_config();
  // One real step of the whole model (every rank computes the same), so the moments are not 0.
  Transformer whole(c);
  FlatBuffer params(whole.table()), grads(whole.table());
  whole.init_params(params, 4);
  AdamW adam(whole.table());
  whole.forward(params, testing::random_batch(c, 4, 10, 5), true, 1);
  whole.backward(params, grads);
  adam.step(params, grads, 1e-2f);

  TrainConfig config;
  config.model = c;
  config.data.dir = "data";
  const DataReference data{"data", "tok.model", "fnv1a64:0000000000000001", "test", c.vocab_size};
  const TrainState state{1, 40};
  std::string dir;
  if (comm().is_root()) {
    char pattern[] = "/tmp/ecmoe-mpi-ckpt-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir = pattern;
  }
  comm().broadcast(dir);
  const std::string one = dir + "/one.safetensors", ranks = dir + "/ranks.safetensors";
  if (comm().is_root()) save_checkpoint(one, config, data, params, adam, state);

  Transformer model(c, &comm());
  FlatBuffer my_params(model.table());
  AdamW my_adam(model.table());
  copy_own_part(params, my_params);
  copy_own_part(adam.m(), my_adam.m());
  copy_own_part(adam.v(), my_adam.v());
  my_adam.set_step_count(adam.step_count());
  save_checkpoint(ranks, config, data, my_params, my_adam, state, nullptr, &comm());
  comm().barrier();
  if (comm().is_root()) {
    const std::string a = read_bytes(one), b = read_bytes(ranks);
    EXPECT_GT(a.size(), 1000u);
    EXPECT_TRUE(a == b) << "the file written by " << comm().size()
                        << " ranks differs from one process's";
  }

  // Every rank loads its own rows back; a single process loads the whole model.
  const Checkpoint checkpoint = Checkpoint::open(ranks);
  FlatBuffer loaded(model.table());
  AdamW loaded_adam(model.table());
  TrainState loaded_state;
  checkpoint.load_training_state(loaded, loaded_adam, loaded_state);
  expect_own_part(params, loaded, "parameters");
  expect_own_part(adam.m(), loaded_adam.m(), "adam_m");
  expect_own_part(adam.v(), loaded_adam.v(), "adam_v");
  EXPECT_EQ(loaded_state.step, 1);
  FlatBuffer whole_loaded(whole.table());
  checkpoint.load_params(whole_loaded);
  EXPECT_EQ(0,
            std::memcmp(whole_loaded.data(), params.data(), sizeof(float) * size_t(params.size())));
  comm().barrier();
  if (comm().is_root()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ecmoe

// The CLI's choice of the CUDA attention (cli/train_device.h): ECMOE_CUDA_ATTENTION=flash|cublas,
// flash when unset or empty, a one-line error for anything else; and the path a model's attention
// takes on each device (flash only in bf16 with head_dim a multiple of 16 up to 128, and only in a
// build with the CUDA backend). No GPU is needed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cli/train_device.h"
#include "core/error.h"
#include "core/precision.h"
#include "nn/attention.h"

namespace ecmoe::cli {
namespace {

// Sets ECMOE_CUDA_ATTENTION (nullptr: unsets it) for one scope.
class AttentionEnv {
 public:
  explicit AttentionEnv(const char* value) {
    if (value)
      setenv(kName, value, 1);
    else
      unsetenv(kName);
  }
  ~AttentionEnv() { unsetenv(kName); }

 private:
  static constexpr const char* kName = "ECMOE_CUDA_ATTENTION";
};

nn::AttentionConfig config(Precision precision, int head_dim) {
  nn::AttentionConfig cfg;
  cfg.batch = 2;
  cfg.seq_len = 8;
  cfg.n_heads = 3;
  cfg.head_dim = head_dim;
  cfg.precision = precision;
  return cfg;
}

#ifdef ECMOE_HAVE_CUDA
constexpr const char* kFlashInThisBuild = "flash";
#else
constexpr const char* kFlashInThisBuild = "cublas";
#endif

TEST(AttentionChoice, FlashByDefaultCublasOnRequest) {
  {
    const AttentionEnv env(nullptr);
    EXPECT_EQ(cuda_attention_choice(), "flash");
  }
  {
    const AttentionEnv env("");
    EXPECT_EQ(cuda_attention_choice(), "flash");
  }
  {
    const AttentionEnv env("cublas");
    EXPECT_EQ(cuda_attention_choice(), "cublas");
  }
  const AttentionEnv env("fast");
  try {
    cuda_attention_choice();
    ADD_FAILURE() << "no error for ECMOE_CUDA_ATTENTION=fast";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ECMOE_CUDA_ATTENTION=fast"), std::string::npos);
  }
}

TEST(AttentionChoice, PathByDeviceAndConfig) {
  const AttentionEnv env(nullptr);
  EXPECT_EQ(attention_path("cpu", config(Precision::kBf16, 64)), "cpu");
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 64)), kFlashInThisBuild);
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 16)), kFlashInThisBuild);
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 128)), kFlashInThisBuild);
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 8)), "cublas");
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 144)), "cublas");
  EXPECT_EQ(attention_path("cuda", config(Precision::kFp32, 64)), "cublas");
  const AttentionEnv cublas("cublas");
  EXPECT_EQ(attention_path("cuda", config(Precision::kBf16, 64)), "cublas");
}

}  // namespace
}  // namespace ecmoe::cli

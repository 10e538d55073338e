// safetensors: round trips, exact bytes of the format, rejection of every kind of corruption, and
// flat-buffer checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "io_test_util.h"

using namespace ecmoe;
namespace fs = std::filesystem;

namespace {

using ecmoe::testing::slurp;

void spill(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char(uint8_t(v >> (8 * i)));
  return s;
}

// A file with `header` as its JSON (unpadded) and `data_bytes` bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\x01');
}

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ecmoe::testing::make_temp_dir("ecmoe_st");
    ASSERT_FALSE(dir_.empty());
    path_ = (dir_ / "x.safetensors").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Opens `bytes` as a file and expects an error whose single line names the file and `problem`.
  void expect_rejected(const std::string& bytes, const std::string& problem) {
    spill(path_, bytes);
    try {
      SafetensorsFile::open(path_);
      ADD_FAILURE() << "accepted a file that should fail with: " << problem;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(problem), std::string::npos) << "message: " << msg;
      EXPECT_NE(msg.find(path_), std::string::npos) << "message: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "message: " << msg;
    }
  }

  fs::path dir_;
  std::string path_;
};

}  // namespace

// Runs `action`, which must throw an ecmoe::Error naming `path` and containing `problem`.
template <typename Action>
void expect_error_naming(Action&& action, const std::string& path, const std::string& problem) {
  try {
    action();
    ADD_FAILURE() << "expected: " << problem;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, RoundTripAllDtypesAndMetadata) {
  const std::vector<float> w = {1.5f, -2.f, 3.25f, 0.f, -0.f, 1e-30f};
  const int64_t step = 123456789012345;
  const std::vector<uint8_t> bytes = {0, 1, 254, 255, 7};
  const std::vector<int32_t> ints = {-7, 2147483647};
  const Metadata meta = {{"format", "pt"}, {"run", "ec-cf2 \"quoted\" ünïcode"}};
  save_safetensors(path_,
                   {{"w", DType::F32, {2, 3}, w.data()},
                    {"step", DType::I64, {}, &step},
                    {"bytes", DType::U8, {5}, bytes.data()},
                    {"empty", DType::F32, {0, 4}, nullptr},
                    {"ints", DType::I32, {2}, ints.data()}},
                   meta);

  const SafetensorsFile f = SafetensorsFile::open(path_);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "step", "bytes", "empty", "ints"}));
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.dtype("step"), DType::I64);
  EXPECT_EQ(f.shape("w"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.shape("step"), (std::vector<int64_t>{}));
  EXPECT_EQ(f.info("empty").numel, 0);

  std::vector<float> w2(6);
  f.read_f32("w", w2.data(), {2, 3});
  EXPECT_EQ(std::memcmp(w.data(), w2.data(), 24), 0);  // bitwise, -0.f included
  int64_t step2 = 0;
  f.read_i64("step", &step2, {});
  EXPECT_EQ(step2, step);
  auto b = f.bytes("bytes");
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(std::memcmp(b.data(), bytes.data(), 5), 0);
  std::vector<int32_t> ints2(2);
  f.read("ints", DType::I32, {2}, ints2.data());
  EXPECT_EQ(ints2, ints);
}

TEST_F(Safetensors, ReadChecksShapeAndDtype) {
  const std::vector<float> w(6, 1.f);
  save_safetensors(path_, {{"w", DType::F32, {2, 3}, w.data()}});
  const SafetensorsFile f = SafetensorsFile::open(path_);
  std::vector<float> dst(6);
  EXPECT_THROW(f.read_f32("w", dst.data(), {3, 2}), Error);
  EXPECT_THROW(f.read_f32("w", dst.data(), {6}), Error);
  EXPECT_THROW(f.read("w", DType::I32, {2, 3}, dst.data()), Error);
  EXPECT_THROW(f.read_f32("nope", dst.data(), {2, 3}), Error);
  try {
    f.read_f32("w", dst.data(), {3, 2});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [2, 3], expected [3, 2]"), std::string::npos)
        << e.what();
  }
}

// The bytes the format prescribes: u64 LE header length, compact JSON padded with spaces to a
// multiple of 8, then the raw little-endian data.
TEST_F(Safetensors, ExactBytes) {
  const float a[2] = {1.f, 2.f};
  save_safetensors(path_, {{"a", DType::F32, {2}, a}}, {{"k", "v"}});
  const std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )";
  ASSERT_EQ(header.size(), 80u);  // 79 bytes of JSON + 1 space of padding
  const std::string expected = std::string("\x50\0\0\0\0\0\0\0", 8) + header +
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  EXPECT_EQ(slurp(path_), expected);
}

TEST_F(Safetensors, EmptyFileWithoutTensorsIsValid) {
  save_safetensors(path_, {});
  EXPECT_EQ(slurp(path_), le64(8) + "{}      ");
  EXPECT_TRUE(SafetensorsFile::open(path_).names().empty());
}

// Files written by other tools: unpadded header, keys in any order, data order unlike header
// order.
TEST_F(Safetensors, AcceptsForeignLayout) {
  const std::string header = R"({"b":{"data_offsets":[8,12],"shape":[1],"dtype":"F32"},)"
                             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  spill(path_, raw_file(header, 12));
  const SafetensorsFile f = SafetensorsFile::open(path_);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(f.metadata().empty());
}

TEST_F(Safetensors, RejectsCorruption) {
  const std::string a8 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string good = raw_file("{" + a8 + "}", 8);
  expect_rejected("", "0 bytes, too short");
  expect_rejected(good.substr(0, 5), "5 bytes, too short");
  expect_rejected(good.substr(0, good.size() - 3), "beyond the data buffer");  // truncated data
  expect_rejected(good.substr(0, 20), "header length 54 exceeds the 12 bytes after it");
  expect_rejected(le64(uint64_t(1) << 40) + good.substr(8), "header length 1099511627776");
  std::string flipped = good;
  flipped[0] ^= 0x04;  // header length 50: the JSON is cut short
  expect_rejected(flipped, "not valid JSON");
  expect_rejected(raw_file("{not json}", 0), "not valid JSON");
  expect_rejected(raw_file("[1, 2]", 0), "not a JSON object");
  expect_rejected(raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "has no dtype");
  expect_rejected(raw_file(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4),
                  "unsupported dtype 'BF16'");
  expect_rejected(raw_file(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", 8),
                  "dtype that is not a string");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "has no shape");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
                  "not a non-negative integer");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
                  "not a non-negative integer");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                  "needs 12 bytes but data_offsets [0, 8] span 8");
  expect_rejected(raw_file(R"({"a":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})", 8),
                  "needs 16 bytes");
  expect_rejected(
      raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
      "overflows");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8),
                  "beyond the data buffer of 8 bytes");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
                  "end before they begin");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
                  "not two non-negative integers");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "has no data_offsets");
  expect_rejected(
      raw_file("{" + a8 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
      "tensors 'a' and 'b' overlap");
  expect_rejected(
      raw_file("{" + a8 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
      "gap of 4 bytes in the data buffer before tensor 'b'");
  expect_rejected(raw_file("{" + a8 + "}", 12), "4 bytes after the last tensor");
  expect_rejected(raw_file("{" + a8 + "," + a8 + "}", 8), "has the key 'a' twice");
  expect_rejected(
      raw_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
      "has the key 'dtype' twice");
  expect_rejected(
      raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", 8),
      "unknown field 'extra'");
  expect_rejected(raw_file(R"({"__metadata__":{"k":1}})", 0), "value of 'k' is not a string");
  expect_rejected(raw_file(R"({"__metadata__":[1]})", 0), "__metadata__ is not an object");
  expect_rejected(raw_file(R"({"a":[[[[[1]]]]]})", 0), "nests deeper");
  expect_rejected(raw_file(R"({"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
                  "empty name");
}

// Random damage (a flipped byte anywhere, a cut at any length) must give a clean Error or a file
// that is still fully consistent; never a crash or an out-of-bounds read (run under ASan).
TEST_F(Safetensors, RandomDamageIsRejectedOrHarmless) {
  const std::vector<float> w(12, 0.5f);
  const int64_t step = 3;
  save_safetensors(path_, {{"w", DType::F32, {3, 4}, w.data()}, {"step", DType::I64, {}, &step}},
                   {{"k", "v"}});
  const std::string good = slurp(path_);
  const Rng rng(7, 0);
  int rejected = 0;
  for (uint64_t trial = 0; trial < 600; ++trial) {
    std::string bad = good;
    if (trial % 3 == 0) {
      bad.resize(rng.below(trial, good.size()));
    } else {
      bad[rng.below(trial, good.size())] ^= char(1 + rng.below(trial + 1000000, 255));
    }
    spill(path_, bad);
    try {
      const SafetensorsFile f = SafetensorsFile::open(path_);
      uint64_t total = 0;
      for (const TensorInfo& t : f.tensors()) {
        const auto bytes = f.bytes(t.name);
        const std::vector<std::byte> copy(bytes.begin(), bytes.end());  // touches every byte
        total += copy.size();
      }
      EXPECT_LE(total + 8, bad.size());
    } catch (const Error& e) {
      ++rejected;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(rejected, 300);  // most damage to a small file hits the header
}

TEST_F(Safetensors, OpenMissingFileNamesIt) {
  try {
    SafetensorsFile::open(path_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open(dir_.string()), Error);  // a directory
}

TEST_F(Safetensors, WriterRejectsBadInput) {
  const float x[2] = {};
  EXPECT_THROW(save_safetensors(path_, {{"a", DType::F32, {2}, x}, {"a", DType::F32, {2}, x}}),
               Error);
  EXPECT_THROW(save_safetensors(path_, {{"__metadata__", DType::F32, {2}, x}}), Error);
  EXPECT_THROW(save_safetensors(path_, {{"", DType::F32, {2}, x}}), Error);
  EXPECT_THROW(save_safetensors(path_, {{"a", DType::F32, {-1}, x}}), Error);
  EXPECT_THROW(save_safetensors(path_, {{"a", DType::F32, {2}, nullptr}}), Error);
  EXPECT_THROW(save_safetensors(path_, {{"\xff", DType::F32, {2}, x}}), Error);  // not UTF-8
  EXPECT_FALSE(fs::exists(path_));
}

// An independent parser: Python's json and struct read our header and data.
TEST_F(Safetensors, PythonReadsOurFile) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  const float w[3] = {0.5f, -1.f, 2.f};
  const int64_t step = 42;
  save_safetensors(path_, {{"w", DType::F32, {1, 3}, w}, {"step", DType::I64, {}, &step}},
                   {{"note", "hi"}});
  const std::string script = dir_.string() + "/check.py";
  std::ofstream(script) << R"(import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
assert n % 8 == 0
h = json.loads(raw[8:8 + n])
data = raw[8 + n:]
assert h["__metadata__"] == {"note": "hi"}
w = h["w"]
assert w["dtype"] == "F32" and w["shape"] == [1, 3]
b, e = w["data_offsets"]
assert struct.unpack("<3f", data[b:e]) == (0.5, -1.0, 2.0)
b, e = h["step"]["data_offsets"]
assert h["step"]["shape"] == [] and struct.unpack("<q", data[b:e]) == (42,)
assert e == len(data)
)";
  const std::string cmd = "/usr/bin/python3 " + script + " " + path_;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// ---- Flat buffers ----

namespace {
TensorTable small_table(int64_t cols = 5) {
  TensorTable t;
  t.add("w", {3, cols});
  t.add("b", {5});
  return t;
}
void fill(FlatBuffer& buf, float base) {
  for (int64_t i = 0; i < buf.size(); ++i) buf.data()[i] = base + float(i);
}
}  // namespace

TEST_F(Safetensors, FlatBuffersRoundTrip) {
  const TensorTable table = small_table();
  FlatBuffer params(table), m(table), v(table);
  fill(params, 0.f);
  fill(m, 100.f);
  fill(v, 200.f);
  const int64_t step = 9;
  save_flat_buffers(path_, {{"", &params}, {"adam_m.", &m}, {"adam_v.", &v}}, {{"step", "9"}},
                    {{"step", DType::I64, {}, &step}});

  const SafetensorsFile f = SafetensorsFile::open(path_);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "b", "adam_m.w", "adam_m.b", "adam_v.w",
                                                 "adam_v.b", "step"}));
  FlatBuffer p2(table), m2(table), v2(table);
  load_flat_buffers(f, {{"", &p2}, {"adam_m.", &m2}, {"adam_v.", &v2}},
                    {.other_tensors = {"step"}});
  for (const auto& spec : table.specs()) {
    EXPECT_EQ(std::memcmp(p2.get(spec.name), params.get(spec.name), spec.numel() * 4), 0);
    EXPECT_EQ(std::memcmp(m2.get(spec.name), m.get(spec.name), spec.numel() * 4), 0);
    EXPECT_EQ(std::memcmp(v2.get(spec.name), v.get(spec.name), spec.numel() * 4), 0);
  }
  // Parameters only, for evaluation.
  FlatBuffer p3(table);
  load_flat_buffers(f, {{"", &p3}},
                    {.other_tensors = {"step"}, .ignored_prefixes = {"adam_m.", "adam_v."}});
  EXPECT_EQ(std::memcmp(p3.get("w"), params.get("w"), 15 * 4), 0);
}

TEST_F(Safetensors, FlatBufferMismatchesAreNamed) {
  const TensorTable table = small_table();
  FlatBuffer params(table), m(table);
  fill(params, 1.f);
  fill(m, 2.f);
  save_flat_buffers(path_, {{"", &params}, {"adam_m.", &m}});
  const SafetensorsFile f = SafetensorsFile::open(path_);

  auto expect_error = [&](auto&& load, const std::string& problem) {
    expect_error_naming(load, path_, problem);
  };
  TensorTable bigger = small_table();
  bigger.add("extra", {2});
  FlatBuffer big(bigger);
  expect_error(
      [&] {
        load_flat_buffers(f, {{"", &big}, {"adam_m.", &m}});
      },
      "lacks tensor 'extra' (shape [2])");
  const TensorTable wider = small_table(4);
  FlatBuffer wide(wider);
  fill(wide, -1.f);
  expect_error(
      [&] {
        load_flat_buffers(f, {{"", &wide}, {"adam_m.", &m}});
      },
      "tensor 'w' has shape [3, 5], expected [3, 4]");
  EXPECT_EQ(wide.data()[0], -1.f);  // untouched: nothing is copied before everything checks out
  FlatBuffer p2(table);
  expect_error([&] { load_flat_buffer(f, "", p2); }, "unexpected tensor 'adam_m.w'");
  expect_error([&] { load_flat_buffer(f, "adam_v.", p2); }, "lacks tensor 'adam_v.w'");
  EXPECT_EQ(p2.data()[0], 0.f);
}

TEST_F(Safetensors, SingleFlatBuffer) {
  const TensorTable table = small_table();
  FlatBuffer params(table), back(table);
  fill(params, 3.f);
  save_flat_buffers(path_, {{"", &params}});
  load_flat_buffer(SafetensorsFile::open(path_), "", back);
  for (const auto& spec : table.specs())
    EXPECT_EQ(std::memcmp(back.get(spec.name), params.get(spec.name), spec.numel() * 4), 0);
}

// A shard of rows of a tensor: the table records the whole shape and where the rows start; a
// file of the whole tensor loads the rows into the shard; a sharded buffer is never written as if
// it were whole.
TEST_F(Safetensors, ShardsLoadTheirRowsOfTheWholeTensor) {
  TensorTable whole;
  whole.add("w", {4, 2, 3});
  whole.add("b", {5});
  FlatBuffer full(whole);
  fill(full, 1.f);
  save_flat_buffers(path_, {{"", &full}});

  TensorTable part;
  const int w = part.add_shard("w", {4, 2, 3}, 2, 2);  // rows 2 and 3
  part.add("b", {5});
  const TensorSpec& spec = part.specs()[w];
  EXPECT_TRUE(spec.sharded());
  EXPECT_EQ(spec.shape, (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(spec.shape_string(), "[4, 2, 3]");
  EXPECT_EQ(spec.shard_offset(), 12);
  EXPECT_EQ(part.parameter_count(), 12 + 5);
  EXPECT_EQ(part.model_parameter_count(), 24 + 5);
  EXPECT_TRUE(part.has_shards());
  EXPECT_FALSE(whole.has_shards());

  FlatBuffer mine(part);
  load_flat_buffer(SafetensorsFile::open(path_), "", mine);
  EXPECT_EQ(std::memcmp(mine.get("w"), full.get("w") + 12, 12 * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(mine.get("b"), full.get("b"), 5 * sizeof(float)), 0);
  expect_error_naming(
      [&] {
        save_flat_buffers(path_, {{"", &mine}});
      },
      path_, "holds expert shards");
  EXPECT_THROW(part.add_shard("x", {4, 2}, 3, 2), Error);  // rows past the end
}

// Produced tensors: pieces go straight into the file; a producer that gives the wrong number of
// bytes fails the write and leaves the previous file in place.
TEST_F(Safetensors, StreamedTensorsMustProduceTheirBytes) {
  const float a[4] = {1, 2, 3, 4};
  save_safetensors_streamed(path_, {{"a", DType::F32, {4}, [&](const ByteSink& sink) {
                                       sink(a, 8);
                                       sink(a + 2, 8);
                                     }}});
  const std::string good = slurp(path_);
  std::vector<float> back(4);
  SafetensorsFile::open(path_).read_f32("a", back.data(), {4});
  EXPECT_EQ(back, (std::vector<float>{1, 2, 3, 4}));
  expect_error_naming(
      [&] {
        save_safetensors_streamed(path_,
                                  {{"a", DType::F32, {4}, [&](const ByteSink& s) { s(a, 8); }}});
      },
      path_, "tensor 'a' produced 8 of its 16 bytes");
  expect_error_naming(
      [&] {
        save_safetensors_streamed(path_,
                                  {{"a", DType::F32, {1}, [&](const ByteSink& s) { s(a, 8); }}});
      },
      path_, "produced more than its 4 bytes");
  EXPECT_EQ(slurp(path_), good);
}

// A minimal safetensors reader for the parity fixtures (tools/make_moe_fixtures.py): u64
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
// {string: string}}, then the raw data. Only F32 and I32. Kept separate from src/io on purpose:
// the fixtures check the engine, so their reader must not share code with it.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ecmoe::parity {

struct FixtureTensor {
  std::string dtype;  // "F32" or "I32"
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

class Fixture {
 public:
  explicit Fixture(const std::string& path) : path_(path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot open");
    const std::vector<unsigned char> file((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    if (file.size() < 8) fail("shorter than the 8-byte header length");
    uint64_t header_len = 0;
    for (int b = 7; b >= 0; --b) header_len = (header_len << 8) | file[b];
    if (header_len > file.size() - 8) fail("header length past the end of the file");
    const auto header = nlohmann::json::parse(file.begin() + 8, file.begin() + 8 + header_len);
    const uint64_t data_begin = 8 + header_len, data_size = file.size() - data_begin;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        for (const auto& [key, value] : entry.items()) meta_[key] = value.get<std::string>();
        continue;
      }
      FixtureTensor t;
      t.dtype = entry.at("dtype").get<std::string>();
      t.shape = entry.at("shape").get<std::vector<int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      if (t.dtype != "F32" && t.dtype != "I32") fail("tensor " + name + ": dtype " + t.dtype);
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size)
        fail("tensor " + name + ": bad data_offsets");
      if (offsets[1] - offsets[0] != uint64_t(t.numel()) * 4)
        fail("tensor " + name + ": byte span does not match its shape");
      t.bytes.assign(file.begin() + data_begin + offsets[0],
                     file.begin() + data_begin + offsets[1]);
      tensors_[name] = std::move(t);
    }
  }

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const FixtureTensor& tensor(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("no tensor " + name);
    return it->second;
  }
  std::vector<float> f32(const std::string& name) const { return values<float>(name, "F32"); }
  std::vector<int32_t> i32(const std::string& name) const { return values<int32_t>(name, "I32"); }

  bool has_meta(const std::string& key) const { return meta_.count(key) != 0; }
  const std::string& meta(const std::string& key) const {
    const auto it = meta_.find(key);
    if (it == meta_.end()) fail("no metadata " + key);
    return it->second;
  }
  int meta_int(const std::string& key) const { return std::stoi(meta(key)); }
  float meta_float(const std::string& key) const { return std::stof(meta(key)); }
  bool meta_bool(const std::string& key) const {
    const std::string& v = meta(key);
    if (v != "true" && v != "false") fail("metadata " + key + " is not a boolean: " + v);
    return v == "true";
  }

 private:
  template <typename T>
  std::vector<T> values(const std::string& name, const char* dtype) const {
    const FixtureTensor& t = tensor(name);
    if (t.dtype != dtype) fail("tensor " + name + " is " + t.dtype + ", wanted " + dtype);
    std::vector<T> out(t.numel());
    // Little-endian on disk and on every machine this engine targets (x86-64, AArch64).
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
    return out;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("fixture " + path_ + ": " + what);
  }

  std::string path_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, FixtureTensor> tensors_;
};

}  // namespace ecmoe::parity

// Writes the fuzzer's seed corpus: small valid safetensors files covering every dtype, scalars,
// empty tensors, metadata with escapes, and a few near-misses. Usage: make_seeds <folder>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "zscrgan/safetensors.h"

namespace {

void save(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> raw(const std::string& header, size_t buffer_bytes) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + buffer_bytes, 0);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <folder>\n");
    return 2;
  }
  const std::string dir = argv[1];
  using zscrgan::SafeTensor;
  using zscrgan::SafeTensorsFile;

  save(dir, "empty.safetensors", zscrgan::serialize_safetensors(SafeTensorsFile{}));

  SafeTensorsFile ckpt;
  ckpt.metadata["format"] = "zscrgan-checkpoint/1";
  ckpt.metadata["config"] = "{\"seed\": 7, \"s\": \"\\\"q\\\"\\n\\u00e9\"}";
  const float w[6] = {-1, 0.5f, 2, 3, 4, 5};
  ckpt.tensors.push_back(zscrgan::make_f32_tensor("param/critic.w1", {2, 3}, w));
  ckpt.tensors.push_back(zscrgan::make_f32_tensor("param/critic.b1", {3}, w));
  const int64_t steps[2] = {12, -1};
  ckpt.tensors.push_back(zscrgan::make_i64_tensor("state/steps", {}, steps));
  ckpt.tensors.push_back(zscrgan::make_i64_tensor("sampler/order", {2}, steps));
  ckpt.tensors.push_back(zscrgan::make_f32_tensor("round/empty", {0, 3}, nullptr));
  save(dir, "checkpoint.safetensors", zscrgan::serialize_safetensors(ckpt));

  SafeTensorsFile all;
  const char* dtypes[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0",
                          "I16",  "U16", "F16", "BF16",    "I32",     "U32",
                          "F32",  "C64", "F64", "I64",     "U64"};
  for (const char* d : dtypes) {
    SafeTensor t;
    t.name = std::string("t_") + d;
    t.dtype = d;
    t.shape = {2};
    t.bytes.assign(2 * zscrgan::safetensors_dtype_size(d), 0x41);
    all.tensors.push_back(t);
  }
  save(dir, "all_dtypes.safetensors", zscrgan::serialize_safetensors(all));

  SafeTensorsFile one;
  one.metadata["k"] = "v";
  const float x = 1.0f;
  one.tensors.push_back(zscrgan::make_f32_tensor("x", {1, 1, 1}, &x));
  save(dir, "one.safetensors", zscrgan::serialize_safetensors(one));

  // Near-misses: each breaks one rule.
  save(dir, "gap.safetensors",
       raw(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2));
  save(dir, "overlap.safetensors",
       raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", 3));
  save(dir, "mismatch.safetensors",
       raw(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", 8));
  save(dir, "overflow.safetensors",
       raw(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0));
  save(dir, "duplicate.safetensors",
       raw(R"({"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})", 1));
  save(dir, "metadata.safetensors", raw(R"({"__metadata__":{"a":"b","c":"\u0000\ud83d\ude00"}}   )", 0));
  return 0;
}

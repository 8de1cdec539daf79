// Writes a fuzzer's seed corpus. Usage: make_seeds [safetensors|npy|config|mat] <folder>
//   safetensors: small valid files covering every dtype, scalars, empty tensors, metadata with
//                escapes, and a few near-misses;
//   npy:         features and labels of each supported dtype, 1.0 and 2.0 headers, near-misses;
//   config:      the shipped configs' kind of text, with and without NUL-separated overrides;
//   mat:         v4, v5 and compressed v5 files holding the variables the importers read.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "formats/npy.h"
#include "formats/safetensors.h"

#ifdef ZSCRGAN_HAVE_MATIO
#include <matio.h>
#endif

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

void npy_seeds(const std::string& dir) {
  zscrgan::HostMatrix m;
  m.rows = 3;
  m.cols = 4;
  for (int i = 0; i < 12; ++i) m.data.push_back(0.5f * i);
  zscrgan::write_npy_matrix(dir + "/features.npy", m);
  zscrgan::write_npy_labels(dir + "/labels.npy", {3, 1, 4, 1, 5});
  auto with_header = [&](const std::string& name, const std::string& dict, size_t data_bytes, int major) {
    std::string h = dict;
    const size_t pre = major == 1 ? 10 : 12;
    while ((pre + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string out = std::string("\x93NUMPY") + char(major) + '\0';
    for (size_t i = 0; i < pre - 8; ++i) out += char((h.size() >> (8 * i)) & 0xff);
    out += h;
    out.append(data_bytes, '\x01');
    save(dir, name, std::vector<uint8_t>(out.begin(), out.end()));
  };
  with_header("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, 1);
  with_header("i4.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }", 20, 1);
  with_header("v2.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", 8, 2);
  with_header("big_endian.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2), }", 8, 1);
  with_header("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1), }", 8, 1);
  with_header("short.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (9, 9), }", 8, 1);
}

void config_seeds(const std::string& dir) {
  auto text = [&](const std::string& name, const std::string& s) {
    save(dir, name, std::vector<uint8_t>(s.begin(), s.end()));
  };
  text("empty.json", "{}");
  text("demo.json", R"({"dataset": "synthetic", "batch_size": 32, "gf_dim": 256, "df_dim": 128,
 "embed_dim": 64, "z_dim": 32, "rounds": 20, "top_k": 50, "device": "auto", "seed": 7,
 "output_dir": "runs/demo", "CSEM_lr": 0.0001, "tf32": false,
 "synthetic": {"seen_classes": 40, "text_noise": 0.4, "seed": 3}})");
  text("bytes.json", R"({"output_dir": {"bytes_hex": "72756eff"}, "dataset": "a/b"})");
  text("overrides.json", std::string("{\"rounds\": 2}") + '\0' + "rounds=5" + '\0' +
                         "synthetic.seed=9" + '\0' + "device=\"cpu\"" + '\0' + "output_dir=x\xff");
  text("deep.json", std::string("{\"seed\": ") + std::string(70, '[') + std::string(70, ']') + "}");
}

#ifdef ZSCRGAN_HAVE_MATIO
void mat_seeds(const std::string& dir) {
  for (int kind = 0; kind < 3; ++kind) {
    for (int file = 0; file < 2; ++file) {
      // The harness reads the first byte's low bit as "res101.mat (0) or att_splits.mat (1)"; a
      // v5 file starts with text and a v4 file with its type, so both kinds occur.
      const std::string path = dir + "/" + (file ? "att" : "res") + std::to_string(kind) + ".mat";
      mat_t* m = Mat_CreateVer(path.c_str(), nullptr, kind == 0 ? MAT_FT_MAT4 : MAT_FT_MAT5);
      const auto z = kind == 2 ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
      auto put = [&](const char* name, size_t rows, size_t cols, std::vector<double> v) {
        size_t dims[2] = {rows, cols};
        matvar_t* var = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, v.data(), MAT_F_DONT_COPY_DATA);
        Mat_VarWrite(m, var, z);
        Mat_VarFree(var);
      };
      if (file == 0) {
        put("features", 4, 6, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24});
        put("labels", 6, 1, {1, 2, 3, 1, 2, 3});
      } else {
        put("att", 2, 3, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6});
        put("trainval_loc", 4, 1, {1, 2, 4, 5});
        put("test_unseen_loc", 2, 1, {3, 6});
      }
      Mat_Close(m);
    }
  }
}
#endif

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: make_seeds [safetensors|npy|config|mat] <folder>\n");
    return 2;
  }
  const std::string kind = argc == 3 ? argv[1] : "safetensors";
  const std::string dir = argv[argc - 1];
  if (kind == "npy") {
    npy_seeds(dir);
    return 0;
  }
  if (kind == "config") {
    config_seeds(dir);
    return 0;
  }
  if (kind == "mat") {
#ifdef ZSCRGAN_HAVE_MATIO
    mat_seeds(dir);
    return 0;
#else
    std::fprintf(stderr, "make_seeds: built without matio\n");
    return 2;
#endif
  }
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

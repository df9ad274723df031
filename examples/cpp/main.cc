// llmc_run: load a model.llmc with TVM's runtime library alone and run it.
//
//   llmc_run model.llmc [inputs.safetensors [outputs.safetensors]]
//
// Without an inputs file, every input is filled with a deterministic ramp (symbolic dims = 1).
// Prints each output (name, dtype, shape, first values, sum) and, when asked, writes them all
// to a safetensors file. Exit status: 0 ok, 2 artifact/input error, 3 runtime (TVM) error.
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/container/tensor.h>

#include "artifact.h"

namespace ffi = tvm::ffi;
using llmc::ArtifactError;
using llmc::HostTensor;

namespace {

DLDataType dl_dtype(const std::string& name) { return ffi::StringToDLDataType(name); }

// Host memory for tensors, 64-byte aligned as TVM's kernels assume.
struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, n ? n : 64);
    if (!t->data) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// Relax's main takes DLTensors; copy host bytes into a fresh CPU tensor.
ffi::Tensor to_device(const HostTensor& t, DLDevice dev) {
  ffi::Tensor out = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::Shape(t.shape), dl_dtype(t.dtype), dev);
  if (!t.data.empty()) std::memcpy(out.data_ptr(), t.data.data(), t.data.size());
  return out;
}

HostTensor to_host(const ffi::Tensor& t, const std::string& dtype) {
  if (t.device().device_type != kDLCPU || !t.IsContiguous())
    throw std::runtime_error("output is not a contiguous CPU tensor");
  HostTensor h;
  h.dtype = dtype;
  for (int64_t d : t.shape()) h.shape.push_back(d);
  h.data.resize(size_t(t.numel()) * llmc::dtype_bytes(dtype));
  if (!h.data.empty())
    std::memcpy(h.data.data(), static_cast<const uint8_t*>(t.data_ptr()) + t.byte_offset(), h.data.size());
  return h;
}

// A ramp in [-1, 1) for floats, small integers otherwise: reproducible without an input file.
HostTensor default_input(const nlohmann::json& spec) {
  HostTensor t;
  t.dtype = spec.at("dtype").get<std::string>();
  int64_t n = 1;
  for (auto& d : spec.at("shape")) {
    int64_t v = d.is_number_integer() ? d.get<int64_t>() : 1;  // symbolic dims -> 1
    t.shape.push_back(v);
    n *= v;
  }
  size_t w = llmc::dtype_bytes(t.dtype);
  t.data.resize(size_t(n) * w);
  for (int64_t i = 0; i < n; ++i) {
    double x = double(i % 16) / 8.0 - 1.0;
    uint8_t* p = t.data.data() + size_t(i) * w;
    if (t.dtype == "float32") { float f = float(x); std::memcpy(p, &f, 4); }
    else if (t.dtype == "float64") { std::memcpy(p, &x, 8); }
    else if (t.dtype == "int64") { int64_t v = i % 7; std::memcpy(p, &v, 8); }
    else if (t.dtype == "int32") { int32_t v = i % 7; std::memcpy(p, &v, 4); }
    else if (t.dtype == "bool" || t.dtype == "uint8" || t.dtype == "int8") { *p = uint8_t(i % 2); }
    else throw ArtifactError("no default input for dtype " + t.dtype + "; pass an inputs file");
  }
  return t;
}

void check_input(const nlohmann::json& spec, const HostTensor& t,
                 std::map<std::string, int64_t>& dims) {
  std::string name = spec.at("name").get<std::string>();
  if (t.dtype != spec.at("dtype").get<std::string>())
    throw ArtifactError("input '" + name + "' has dtype " + t.dtype + ", the model expects " +
                        spec.at("dtype").get<std::string>());
  if (t.shape.size() != spec.at("shape").size())
    throw ArtifactError("input '" + name + "' has the wrong rank");
  for (size_t i = 0; i < t.shape.size(); ++i) {
    const auto& want = spec["shape"][i];
    if (want.is_number_integer() && want.get<int64_t>() != t.shape[i])
      throw ArtifactError("input '" + name + "' axis " + std::to_string(i) + " must be " + want.dump());
    if (want.is_string()) {
      auto [it, fresh] = dims.emplace(want.get<std::string>(), t.shape[i]);
      if (!fresh && it->second != t.shape[i])
        throw ArtifactError("input '" + name + "': dim " + want.dump() + " disagrees with an earlier input");
    }
  }
}

void print_tensor(const std::string& name, const HostTensor& t) {
  std::cout << name << " " << t.dtype << " [";
  for (size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? ", " : "") << t.shape[i];
  std::cout << "]";
  if (t.dtype == "float32") {
    size_t n = t.data.size() / 4;
    const float* f = reinterpret_cast<const float*>(t.data.data());
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += f[i];
    std::cout << " values";
    for (size_t i = 0; i < n && i < 6; ++i) std::cout << " " << f[i];
    std::cout << (n > 6 ? " ..." : "") << " sum " << sum;
  }
  std::cout << "\n";
}

// TVM loads libraries from files: write lib/model.so to a private temp file, load, unlink.
ffi::Module load_library(const std::vector<uint8_t>& bytes) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/llmc-XXXXXX.so";
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  int fd = mkstemps(buf.data(), 3);
  if (fd < 0) throw std::runtime_error("cannot create a temporary file for the library");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = write(fd, bytes.data() + done, bytes.size() - done);
    if (w <= 0) { close(fd); unlink(buf.data()); throw std::runtime_error("writing the library failed"); }
    done += size_t(w);
  }
  close(fd);
  try {
    ffi::Module lib = ffi::Module::LoadFromFile(buf.data());
    unlink(buf.data());
    return lib;
  } catch (...) {
    unlink(buf.data());
    throw;
  }
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError(path + ": cannot read");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

int run(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::cerr << "usage: llmc_run model.llmc [inputs.safetensors [outputs.safetensors]]\n";
    return 2;
  }
  llmc::Artifact art = llmc::read_artifact(argv[1]);
  const auto& m = art.manifest;
  std::string lib_name = m.value("library", std::string());
  if (!art.members.count(lib_name))
    throw ArtifactError(std::string(argv[1]) + ": manifest names library '" + lib_name +
                        "', which is not a member");
  auto weights = art.members.count("weights.safetensors")
                     ? llmc::parse_safetensors(art.members["weights.safetensors"], "weights.safetensors")
                     : std::map<std::string, HostTensor>{};
  std::map<std::string, HostTensor> given;
  if (argc >= 3) given = llmc::parse_safetensors(slurp(argv[2]), argv[2]);

  DLDevice cpu{kDLCPU, 0};
  ffi::Module lib = load_library(art.members[lib_name]);
  auto load_exec = lib->GetFunction("vm_load_executable", false);
  if (!load_exec) throw ArtifactError("lib/model.so has no Relax VM executable");
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  // (device type, device id, allocator: 2 = pooled), as tvm.runtime.vm.VirtualMachine does.
  (*vm->GetFunction("vm_initialization", false))(static_cast<int>(kDLCPU), 0, 2);
  auto main_fn = vm->GetFunction("main", false);
  if (!main_fn) throw ArtifactError("the executable has no main function");

  std::vector<ffi::Any> args;
  std::map<std::string, int64_t> dims;
  for (const auto& spec : m.at("inputs")) {
    std::string name = spec.at("name").get<std::string>();
    auto it = given.find(name);
    HostTensor t = it != given.end() ? it->second : default_input(spec);
    check_input(spec, t, dims);
    args.emplace_back(to_device(t, cpu));
  }
  for (const auto& p : m.at("params")) {
    auto it = weights.find(p.get<std::string>());
    if (it == weights.end()) throw ArtifactError("weight '" + p.get<std::string>() + "' is missing");
    args.emplace_back(to_device(it->second, cpu));
  }
  std::vector<ffi::AnyView> views(args.begin(), args.end());
  ffi::Any result;
  main_fn.value().CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);

  std::vector<ffi::Tensor> outs;
  if (auto arr = result.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& a : *arr) outs.push_back(a.cast<ffi::Tensor>());
  } else {
    outs.push_back(result.cast<ffi::Tensor>());
  }
  const auto& out_specs = m.at("outputs");
  if (outs.size() != out_specs.size())
    throw ArtifactError("the library returned " + std::to_string(outs.size()) +
                        " outputs, the manifest lists " + std::to_string(out_specs.size()));
  std::map<std::string, HostTensor> results;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string name = out_specs[i].at("name").get<std::string>();
    results[name] = to_host(outs[i], out_specs[i].at("dtype").get<std::string>());
    print_tensor(name, results[name]);
  }
  if (argc == 4) {
    auto blob = llmc::write_safetensors(results);
    std::ofstream(argv[3], std::ios::binary).write(reinterpret_cast<const char*>(blob.data()),
                                                   std::streamsize(blob.size()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const ArtifactError& e) {
    std::cerr << "llmc_run: " << e.what() << "\n";
    return 2;
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "llmc_run: malformed manifest (" << e.what() << ")\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "llmc_run: runtime error: " << e.what() << "\n";
    return 3;
  }
}

// Reading an llmc artifact (model.llmc) without Python: the stored zip, the manifest checks
// (format, versions, sha256 of every member, target architecture) and safetensors.
// Everything here is plain C++17 + nlohmann::json + OpenSSL libcrypto; no TVM.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmc {

// Every problem with the file is one of these (the Python runtime's ArtifactError).
struct ArtifactError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One tensor of a safetensors blob: dtype name as the manifest spells it ("float32", ...).
struct HostTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

struct Artifact {
  nlohmann::json manifest;
  std::map<std::string, std::vector<uint8_t>> members;  // name -> bytes (verified)
};

// Read and verify: zip structure, manifest format/version, llmc major version, every member's
// sha256, no extra or missing members, and the target architecture against this machine.
Artifact read_artifact(const std::string& path);

// safetensors <-> tensors (little-endian hosts).
std::map<std::string, HostTensor> parse_safetensors(const std::vector<uint8_t>& blob,
                                                    const std::string& where);
std::vector<uint8_t> write_safetensors(const std::map<std::string, HostTensor>& tensors);

size_t dtype_bytes(const std::string& dtype);  // throws ArtifactError for unknown names
std::string host_arch();                       // uname -m, lower case ("x86_64", "aarch64")

}  // namespace llmc

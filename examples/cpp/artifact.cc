#include "artifact.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "sha256.h"

namespace llmc {
namespace {

constexpr const char* kFormat = "llmc-artifact";
constexpr int kFormatVersion = 1;
constexpr int kLlmcMajor = 0;  // artifacts from another major llmc version are refused
constexpr uint64_t kMaxHeader = 100u << 20;

uint32_t rd32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError(path + ": no such file or not readable");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The stored (uncompressed) zip that runtime/format.py writes: a run of local file headers,
// each followed by its data, then the central directory. Every offset is bounds-checked.
std::map<std::string, std::vector<uint8_t>> read_stored_zip(const std::vector<uint8_t>& z,
                                                            const std::string& where) {
  std::map<std::string, std::vector<uint8_t>> out;
  size_t pos = 0;
  while (pos + 4 <= z.size() && rd32(&z[pos]) == 0x04034b50) {
    if (pos + 30 > z.size()) throw ArtifactError(where + ": truncated zip header");
    const uint8_t* h = &z[pos];
    uint16_t flags = rd16(h + 6), method = rd16(h + 8);
    uint32_t csize = rd32(h + 18), usize = rd32(h + 22);
    uint16_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    size_t data = pos + 30 + size_t(nlen) + xlen;
    if (data > z.size()) throw ArtifactError(where + ": truncated zip header");
    std::string name(reinterpret_cast<const char*>(h + 30), nlen);
    if (csize == 0xFFFFFFFFu || usize == 0xFFFFFFFFu)
      throw ArtifactError(where + ": member '" + name + "' uses zip64 (over 4 GiB), which this "
                          "example reader does not support");
    if (method != 0 || (flags & 0x8) || (flags & 0x1) || csize != usize)
      throw ArtifactError(where + ": member '" + name +
                          "' is not stored uncompressed (not an artifact llmc wrote)");
    if (csize > z.size() - data) throw ArtifactError(where + ": member '" + name + "' is truncated");
    if (!out.emplace(name, std::vector<uint8_t>(z.begin() + data, z.begin() + data + csize)).second)
      throw ArtifactError(where + ": member '" + name + "' appears twice (tampered artifact?)");
    pos = data + csize;
  }
  if (out.empty()) throw ArtifactError(where + ": not an llmc artifact (not a stored zip file)");
  if (pos + 4 > z.size() || rd32(&z[pos]) != 0x02014b50)
    throw ArtifactError(where + ": zip has no central directory after its members (damaged)");
  return out;
}

}  // namespace

std::string host_arch() {
  struct utsname u {};
  if (uname(&u) != 0) return "";
  std::string m = u.machine;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  if (m == "arm64") m = "aarch64";
  return m;
}

Artifact read_artifact(const std::string& path) {
  Artifact art;
  auto members = read_stored_zip(read_file(path), path);
  auto mit = members.find("manifest.json");
  if (mit == members.end()) throw ArtifactError(path + ": not an llmc artifact (no manifest.json)");
  try {
    art.manifest = nlohmann::json::parse(mit->second.begin(), mit->second.end());
  } catch (const nlohmann::json::exception& e) {
    throw ArtifactError(path + ": manifest.json is not valid JSON (" + e.what() + ")");
  }
  const auto& m = art.manifest;
  if (!m.is_object() || m.value("format", std::string()) != kFormat)
    throw ArtifactError(path + ": not an llmc artifact (wrong manifest format)");
  if (!m.contains("format_version") || !m["format_version"].is_number_integer() ||
      m["format_version"].get<int64_t>() != kFormatVersion)
    throw ArtifactError(path + ": artifact format version " +
                        (m.contains("format_version") ? m["format_version"].dump() : "missing") +
                        ", this reader reads version " + std::to_string(kFormatVersion) +
                        "; recompile the model");
  std::string ver = m.contains("llmc_version") && m["llmc_version"].is_string()
                        ? m["llmc_version"].get<std::string>() : "";
  if (ver.empty() || ver.substr(0, ver.find('.')) != std::to_string(kLlmcMajor))
    throw ArtifactError(path + ": built by llmc '" + ver + "', incompatible with this reader (llmc " +
                        std::to_string(kLlmcMajor) + ".x); recompile the model");
  if (!m.contains("members") || !m["members"].is_object())
    throw ArtifactError(path + ": manifest has no valid member list");
  std::set<std::string> expected;
  for (auto& [name, digest] : m["members"].items()) {
    expected.insert(name);
    auto it = members.find(name);
    if (it == members.end()) throw ArtifactError(path + ": member '" + name + "' is missing");
    if (!digest.is_string() || sha256_hex(it->second.data(), it->second.size()) != digest.get<std::string>())
      throw ArtifactError(path + ": member '" + name + "' does not match its sha256 in the "
                          "manifest (the file was modified or damaged)");
  }
  for (auto& [name, bytes] : members)
    if (name != "manifest.json" && !expected.count(name))
      throw ArtifactError(path + ": unexpected member '" + name + "' (tampered artifact?)");
  if (!m.contains("target") || !m["target"].is_object())
    throw ArtifactError(path + ": manifest has no target");
  std::string arch = m["target"].value("arch", std::string());
  if (!arch.empty() && arch != host_arch())
    throw ArtifactError(path + ": built for " + arch + ", this machine is " + host_arch() +
                        "; recompile with --target for this machine");
  members.erase("manifest.json");
  art.members = std::move(members);
  return art;
}

size_t dtype_bytes(const std::string& d) {
  static const std::map<std::string, size_t> sizes = {
      {"bool", 1}, {"int8", 1}, {"uint8", 1}, {"int16", 2}, {"uint16", 2}, {"float16", 2},
      {"bfloat16", 2}, {"int32", 4}, {"uint32", 4}, {"float32", 4}, {"int64", 8},
      {"uint64", 8}, {"float64", 8}};
  auto it = sizes.find(d);
  if (it == sizes.end()) throw ArtifactError("unknown dtype '" + d + "'");
  return it->second;
}

namespace {
const std::map<std::string, std::string>& st_to_dtype() {
  static const std::map<std::string, std::string> m = {
      {"BOOL", "bool"}, {"I8", "int8"}, {"U8", "uint8"}, {"I16", "int16"}, {"U16", "uint16"},
      {"F16", "float16"}, {"BF16", "bfloat16"}, {"I32", "int32"}, {"U32", "uint32"},
      {"F32", "float32"}, {"I64", "int64"}, {"U64", "uint64"}, {"F64", "float64"}};
  return m;
}
}  // namespace

std::map<std::string, HostTensor> parse_safetensors(const std::vector<uint8_t>& b,
                                                    const std::string& where) {
  if (b.size() < 8) throw ArtifactError(where + ": safetensors blob is truncated");
  uint64_t hlen = rd64(b.data());
  if (hlen > kMaxHeader || hlen > b.size() - 8)
    throw ArtifactError(where + ": safetensors header length is out of range");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + hlen);
  } catch (const nlohmann::json::exception& e) {
    throw ArtifactError(where + ": safetensors header is not valid JSON (" + e.what() + ")");
  }
  if (!header.is_object()) throw ArtifactError(where + ": safetensors header is not an object");
  const size_t base = 8 + hlen, avail = b.size() - base;
  std::map<std::string, HostTensor> out;
  for (auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      HostTensor t;
      auto st = st_to_dtype().find(e.at("dtype").get<std::string>());
      if (st == st_to_dtype().end()) throw ArtifactError(where + ": tensor '" + name + "' has an unsupported dtype");
      t.dtype = st->second;
      uint64_t n = 1;
      for (auto& d : e.at("shape")) {
        int64_t v = d.get<int64_t>();
        if (v < 0 || (v > 0 && n > (uint64_t(1) << 40) / uint64_t(v)))
          throw ArtifactError(where + ": tensor '" + name + "' has an invalid shape");
        n *= uint64_t(v);
        t.shape.push_back(v);
      }
      uint64_t begin = e.at("data_offsets").at(0).get<uint64_t>();
      uint64_t end = e.at("data_offsets").at(1).get<uint64_t>();
      if (begin > end || end > avail || end - begin != n * dtype_bytes(t.dtype))
        throw ArtifactError(where + ": tensor '" + name + "' has data offsets out of range");
      t.data.assign(b.begin() + base + begin, b.begin() + base + end);
      out.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception& ex) {
      throw ArtifactError(where + ": tensor '" + name + "' entry is malformed (" + ex.what() + ")");
    }
  }
  return out;
}

std::vector<uint8_t> write_safetensors(const std::map<std::string, HostTensor>& tensors) {
  std::map<std::string, std::string> to_st;
  for (auto& [st, d] : st_to_dtype()) to_st[d] = st;
  nlohmann::json header = nlohmann::json::object();
  uint64_t off = 0;
  for (auto& [name, t] : tensors) {
    header[name] = {{"dtype", to_st.at(t.dtype)}, {"shape", t.shape},
                    {"data_offsets", {off, off + t.data.size()}}};
    off += t.data.size();
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';
  std::vector<uint8_t> out(8);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = uint8_t(n >> (8 * i));
  out.insert(out.end(), h.begin(), h.end());
  for (auto& [name, t] : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

}  // namespace llmc

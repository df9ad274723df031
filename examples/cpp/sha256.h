// SHA-256 (FIPS 180-4), small and dependency-free, so the example needs no OpenSSL on the device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace llmc {
std::string sha256_hex(const uint8_t* data, size_t n);
}

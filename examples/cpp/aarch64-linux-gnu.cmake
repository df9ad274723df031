# Toolchain file: cross-build llmc_run for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu.
#   cmake -S examples/cpp -B build/cpp-arm64 -DCMAKE_TOOLCHAIN_FILE=examples/cpp/aarch64-linux-gnu.cmake \
#         -DTVM_PY_ROOT=<site-packages> -DTVM_RUNTIME_LIB_DIR=<aarch64 tvm/lib> \
#         -DTVM_FFI_LIB_DIR=<aarch64 tvm_ffi/lib> -DNLOHMANN_JSON_INCLUDE_DIR=<folder with nlohmann/>
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

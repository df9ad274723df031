#!/usr/bin/env bash
# Pack TVM for an offline GPU machine whose Python differs from ours (the lent H200 has Python 3.12,
# no TVM and no package registry) into .gpu_bundle/, small enough to travel with the working tree
# (< 64 MiB with the repo): the apache-tvm wheel is 100 MB, but xz on its 259 MB libtvm_compiler.so
# (LLVM inside) alone gives ~57 MB, and CUTLASS headers (unused by llmc) are left out.
# bench/gpu_check.sh unpacks the bundle when it finds one.  Usage: bench/gpu_bundle.sh [PYVER=3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
OUT=.gpu_bundle
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  $PLAT -d "$TMP" apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1
mkdir -p "$OUT" "$TMP/tvm" "$TMP/ffi"
(cd "$TMP/tvm" && unzip -q "$TMP"/apache_tvm-0*.whl)
(cd "$TMP/ffi" && unzip -q "$TMP"/apache_tvm_ffi-*.whl)
# left out: sources, vendored headers, test libraries, the web runtime and Relax's model
# frontends (llmc builds Relax itself): none is loaded when compiling or running llmc models
(cd "$TMP/ffi" && tar --exclude=./tvm_ffi/3rdparty --exclude=./tvm_ffi/src --exclude=./tvm_ffi/cython \
  --exclude=./tvm_ffi/lib/libtvm_ffi_testing.so -cf - . | xz -9e > "$OLDPWD/$OUT/tvm_ffi.tar.xz")
mv "$TMP/tvm/tvm/lib/libtvm_compiler.so" "$TMP/compiler.so"
(cd "$TMP/tvm" && tar --exclude=./tvm/3rdparty --exclude=./tvm/src --exclude=./tvm/web \
  --exclude=./tvm/relax/frontend -cf - . | xz -9e > "$OLDPWD/$OUT/tvm_rest.tar.xz")
xz -T1 -9e --lzma2=preset=9e,dict=256MiB -c "$TMP/compiler.so" > "$OUT/libtvm_compiler.so.xz"
ls -la "$OUT"
echo "travels: $(du -cb "$OUT"/* | tail -1 | cut -f1) bytes + the repo (limit 64 MiB = 67108864)"

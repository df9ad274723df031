#!/usr/bin/env bash
# Fetch the aarch64 TVM runtime an arm64 edge app ships: libtvm_runtime.so and libtvm_ffi.so
# from the manylinux aarch64 wheels of the exact versions llmc pins (headers are the x86
# wheel's; they are architecture independent). Usage: fetch_aarch64_runtime.sh DEST_DIR
set -euo pipefail
dest=${1:?usage: fetch_aarch64_runtime.sh DEST_DIR}
mkdir -p "$dest"
if [[ -f $dest/libtvm_runtime.so && -f $dest/libtvm_ffi.so ]]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
  --python-version 3.11 apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 -d "$tmp"
python - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
want = {"tvm/lib/libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so"}
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as zf:
        for name in want & set(zf.namelist()):
            with open(os.path.join(dest, os.path.basename(name)), "wb") as fh:
                fh.write(zf.read(name))
PY
ls -l "$dest"

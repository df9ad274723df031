"""CUDA source -> fatbin at compile time, and an exported library that carries the binary.

TVM's CUDA codegen leaves a module holding CUDA C++ source (format "cuda") that its runtime
compiles at load time through the Python callback ``tvm_callback_cuda_compile`` (NVRTC or nvcc):
a deployed artifact would then need a CUDA compiler and Python. llmc compiles that source here
with nvcc into a fatbin holding SASS for exactly the chosen ``sm_XY``, and writes the library's
import blob (``__tvm_ffi__library_bin``) with the CUDA module re-serialized as
``[fmt="fatbin"][fmap][fatbin]``, the layout TVM's ``ffi.Module.load_from_bytes.cuda`` reads and
hands to ``cuModuleLoadData`` unchanged. Where the CUDA runtime is present at build time (a GPU
machine), TVM compiles through the callback during codegen instead; :func:`nvcc_callback` makes
that produce the same fatbin, so both paths give a library without source.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
from typing import Callable, Iterator

import tvm
import tvm_ffi

from llmc.errors import BackendError

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_CB = "tvm_callback_cuda_compile"


def find_nvcc() -> str:
    """Path of nvcc ($CUDA_HOME/bin, /usr/local/cuda/bin or PATH); BackendError if missing."""
    for cand in (os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""),
                 "/usr/local/cuda"):
        path = os.path.join(cand, "bin", "nvcc") if cand else ""
        if path and os.access(path, os.X_OK):
            return path
    found = shutil.which("nvcc")
    if not found:
        raise BackendError("--target cuda needs nvcc (the CUDA toolkit) at compile time; install "
                           "it or put it on PATH (loading the artifact needs no compiler)")
    return found


def _compile(source: str, arch: str, fmt: str) -> bytes:
    from tvm.support import nvcc

    nvcc_dir = os.path.dirname(find_nvcc())
    if shutil.which("nvcc") != os.path.join(nvcc_dir, "nvcc"):  # TVM runs plain "nvcc"
        os.environ["PATH"] = nvcc_dir + os.pathsep + os.environ.get("PATH", "")
    num = arch.split("_")[1]
    gencode = (["-gencode", f"arch=compute_{num},code=sm_{num}"] if fmt != "ptx"
               else ["-arch", f"compute_{num}"])
    try:
        with tvm.target.Target({"kind": "cuda", "arch": arch}):
            out = nvcc.compile_cuda(source, target_format=fmt, arch=gencode, compiler="nvcc")
    except Exception as exc:  # RuntimeError with nvcc's log
        lines = [ln for ln in str(exc).splitlines() if "error" in ln.lower()] or \
            str(exc).splitlines()[-3:]
        raise BackendError(f"nvcc failed compiling the generated CUDA kernels for {arch}: "
                           + " | ".join(lines[:5])[:800]) from exc
    return bytes(out)


def compile_fatbin(source: str, arch: str) -> bytes:
    """nvcc: CUDA source -> fatbin with SASS for ``arch`` (e.g. sm_80)."""
    return _compile(source, arch, "fatbin")


def compile_ptx(source: str, arch: str) -> str:
    """nvcc: CUDA source -> PTX text (inspection: tensor-core instructions, launch bounds)."""
    return _compile(source, arch, "ptx").decode("utf-8", "replace")


@contextlib.contextmanager
def nvcc_callback(arch: str) -> Iterator[list]:
    """Route TVM's build-time compile callback to nvcc fatbin for ``arch`` during a build.

    Yields the list of (source, fatbin) pairs compiled through it. The previous callback (TVM's
    NVRTC one when ``tvm.support.nvcc`` was imported) is put back afterwards.
    """
    compiled: list = []
    prev = tvm_ffi.get_global_func(_CB, allow_missing=True)

    def callback(code, *_):
        binary = compile_fatbin(str(code), arch)
        compiled.append((str(code), binary))
        return tvm_ffi.Bytes(binary) if hasattr(tvm_ffi, "Bytes") else binary

    tvm_ffi.register_global_func(_CB, callback, override=True)
    try:
        yield compiled
    finally:
        if prev is not None:
            tvm_ffi.register_global_func(_CB, prev, override=True)


# ----------------------------------------------------------------------------- library blob
def cuda_source_modules(mod) -> list:
    """Imported modules of kind "cuda" that still hold CUDA source (the codegen's fallback)."""
    out, seen, todo = [], set(), [mod]
    while todo:
        m = todo.pop()
        for sub in m.imports:
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            todo.append(sub)
            if sub.kind == "cuda":
                out.append(sub)
    return out


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def patch_blob(blob: bytes, binaries: dict[str, bytes]) -> bytes:
    """Replace each serialized source-format CUDA module in ``blob`` by its fatbin.

    ``binaries`` maps CUDA source -> fatbin; modules already holding a binary are left alone. The blob is ``u64 total`` then the module tree, where
    a module is ``u64 len, kind`` then ``u64 len, SaveToBytes()``; a CUDA module's bytes are
    ``[str fmt][fmap][bytes code]``, each string/bytes length-prefixed (u64, little endian).
    """
    if struct.unpack_from("<Q", blob, 0)[0] != len(blob) - 8:
        raise BackendError("unexpected TVM library blob layout (total length); cannot embed "
                           "CUDA binaries")
    kind = _u64(4) + b"cuda"
    fmt_cuda = _u64(4) + b"cuda"
    out = bytearray()
    pos = 8
    done = 0
    while True:
        at = blob.find(kind, pos)
        if at < 0:
            break
        size_at = at + len(kind)
        (size,) = struct.unpack_from("<Q", blob, size_at)
        body_at = size_at + 8
        body = blob[body_at:body_at + size]
        if not body.startswith(fmt_cuda) or body_at + size > len(blob):
            pos = at + 1
            continue
        code = next((src.encode() for src in binaries
                     if body.endswith(_u64(len(src.encode())) + src.encode())), None)
        if code is None:
            raise BackendError("a CUDA module in the exported library holds source llmc did not "
                               "compile; cannot embed its binary")
        fmap = body[len(fmt_cuda):len(body) - 8 - len(code)]
        binary = binaries[code.decode()]
        new_body = _u64(6) + b"fatbin" + fmap + _u64(len(binary)) + binary
        out += blob[pos:size_at] + _u64(len(new_body)) + new_body
        pos = body_at + size
        done += 1
    out += blob[pos:]
    # done == 0 is the GPU-machine path: TVM already compiled through nvcc_callback at codegen
    data = bytes(out[8:])
    return _u64(len(data)) + data


def blob_to_c(template: str, blob: bytes) -> str:
    """TVM's ModulePackImportsToC text with its byte array replaced by ``blob``."""
    m = re.search(r"__tvm_ffi__library_bin\[(\d+)\] = \{", template)
    end = template.rfind("};")
    if not m or end < m.end():
        raise BackendError("unexpected ModulePackImportsToC output; cannot embed CUDA binaries")
    rows = []
    for i in range(0, len(blob), 20):
        rows.append("  " + ",".join(f"0x{b:02x}" for b in blob[i:i + 20]) + ",")
    return (template[:m.start()] + f"__tvm_ffi__library_bin[{len(blob)}] = {{\n"
            + "\n".join(rows) + "\n" + template[end:])


def make_pack_imports(binaries: dict[str, bytes]) -> Callable:
    """An ``export_library(fpack_imports=...)`` that embeds fatbins instead of CUDA source."""

    def pack(mod, is_system_lib: bool, prefix: str, workspace_dir: str) -> str:
        to_tensor = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")
        to_c = tvm_ffi.get_global_func("runtime.ModulePackImportsToC")
        blob = bytes(to_tensor(mod).numpy().tobytes())
        if binaries:
            blob = patch_blob(blob, binaries)
        path = os.path.join(workspace_dir, f"{prefix}devc.c")
        with open(path, "w") as fh:
            fh.write(blob_to_c(to_c(mod, is_system_lib, prefix), blob))
        return path

    return pack


def fatbin_entries(blob: bytes) -> list[tuple[str, int]]:
    """(kind, sm) of every image in the first fatbin found in ``blob``: kind "sass" (cubin) or
    "ptx" (which the driver would JIT-compile at load), sm e.g. 80."""
    at = blob.find(FATBIN_MAGIC)
    if at < 0:
        return []
    _, _, hsize, size = struct.unpack_from("<IHHQ", blob, at)
    pos, end = at + hsize, at + hsize + size
    out = []
    while pos + 32 <= end:
        kind, _, ehsize, payload = struct.unpack_from("<HHIQ", blob, pos)
        (sm,) = struct.unpack_from("<I", blob, pos + 28)
        out.append(({1: "ptx", 2: "sass"}.get(kind, str(kind)), sm))
        pos += ehsize + payload
    return out

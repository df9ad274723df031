"""Hypothesis strategies: structurally generated ONNX models and mutated files.

ONNX models are built from a small op vocabulary with adversarial shapes (0, negative, 2**31,
2**62, symbolic), attributes out of range, inputs that are missing (no initializer), cyclic
(a node reading a later node's output), deep chains, and initializers whose declared dims
disagree with their data. Files (ONNX or artifacts) get byte-level mutations; artifacts also
get manifest and safetensors edits with the sha256 recomputed, so the checks past the hash
(versions, target, signature, weights) are reached too.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper

HUGE = [2**31, 2**40, 2**62]
DIMS = st.one_of(st.integers(1, 4), st.sampled_from([0, -1, -7, *HUGE]),
                 st.sampled_from(["N", "seq", "", "1bad name"]))
SMALL_INTS = st.one_of(st.integers(-4, 4), st.sampled_from([-(2**62), 2**31, 2**62]))
DTYPES = [TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT16, TensorProto.BOOL,
          TensorProto.INT32, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.UINT8]

# op -> (number of inputs, attribute strategies)
OPS: dict[str, tuple[int, dict]] = {
    "Relu": (1, {}), "Exp": (1, {}), "Neg": (1, {}), "Identity": (1, {}),
    "Add": (2, {}), "Mul": (2, {}), "Div": (2, {}), "MatMul": (2, {}), "Where": (3, {}),
    "Softmax": (1, {"axis": SMALL_INTS}), "Transpose": (1, {"perm": st.lists(SMALL_INTS, min_size=1, max_size=4)}),
    "Concat": (2, {"axis": SMALL_INTS}), "Reshape": (2, {}), "Expand": (2, {}), "Tile": (2, {}),
    "Gather": (2, {"axis": SMALL_INTS}), "Unsqueeze": (2, {}), "Squeeze": (1, {}),
    "ReduceSum": (1, {"keepdims": st.integers(0, 1)}), "Cast": (1, {"to": st.sampled_from(DTYPES)}),
    "ConstantOfShape": (1, {}), "Range": (3, {}), "Slice": (3, {}), "Shape": (1, {}),
    "Flatten": (1, {"axis": SMALL_INTS}), "Split": (1, {"axis": SMALL_INTS}),
    "Conv": (2, {"strides": st.lists(SMALL_INTS, min_size=1, max_size=3), "pads": st.lists(SMALL_INTS, min_size=1, max_size=6),
                 "group": SMALL_INTS}),
    "MaxPool": (1, {"kernel_shape": st.lists(SMALL_INTS, min_size=1, max_size=3)}),
    "Pad": (2, {}), "Resize": (1, {}), "NonZero": (1, {}), "Loop": (1, {}), "If": (1, {}),
    "TopK": (2, {}), "Einsum": (2, {"equation": st.sampled_from(["ij,jk->ik", "i,i", "??", ""])}),
}


@st.composite
def initializers(draw, name: str):
    """A small tensor; sometimes with dims that do not match its data, or a huge claimed shape."""
    kind = draw(st.sampled_from(["ints", "floats", "huge_shape", "mismatch", "raw_short"]))
    if kind == "ints":
        vals = draw(st.lists(SMALL_INTS, min_size=0, max_size=6))
        return helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)
    if kind == "floats":
        shape = draw(st.lists(st.integers(1, 3), max_size=3))
        arr = np.ones(shape, np.float32) * draw(st.floats(-2, 2, width=32))
        return onnx.numpy_helper.from_array(arr, name)
    if kind == "huge_shape":  # a shape tensor asking for 2**40+ elements
        vals = draw(st.lists(st.sampled_from([1, 2, *HUGE]), min_size=1, max_size=4))
        return helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)
    if kind == "mismatch":
        t = helper.make_tensor(name, TensorProto.FLOAT, [2], [1.0, 2.0])
        t.dims[:] = [draw(st.integers(2, 9)), 3]  # declared dims disagree with the data
        return t
    t = helper.make_tensor(name, TensorProto.FLOAT, [4], [0.0] * 4)
    t.raw_data = b"\x00" * draw(st.integers(0, 15))
    t.ClearField("float_data")
    return t


@st.composite
def onnx_models(draw) -> onnx.ModelProto:
    """A random ONNX model: 1-2 inputs, up to 12 nodes (or a deep chain), adversarial pieces."""
    clean = draw(st.integers(0, 9)) < 7  # mostly well-formed, so the converters are reached
    n_in = draw(st.integers(1, 2))
    in_dtypes = [TensorProto.FLOAT] if clean else DTYPES[:3] + [TensorProto.STRING]
    in_dims = st.integers(1, 4) | st.sampled_from(["N", "seq"]) if clean else DIMS
    inputs = [helper.make_tensor_value_info(f"in{i}", draw(st.sampled_from(in_dtypes)),
                                            draw(st.lists(in_dims, max_size=4)))
              for i in range(n_in)]
    values = [vi.name for vi in inputs]
    inits = [draw(initializers(f"c{i}")) for i in range(draw(st.integers(0, 3)))]
    values += [t.name for t in inits]
    nodes = []
    if draw(st.integers(0, 9)) == 0:  # a deep chain: recursion / quadratic passes
        depth = draw(st.sampled_from([500, 3000]))
        prev = values[0]
        for k in range(depth):
            nodes.append(helper.make_node("Relu", [prev], [f"d{k}"], name=f"deep{k}"))
            prev = f"d{k}"
        values.append(prev)
    for k in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(sorted(OPS)))
        n_args, attr_st = OPS[op]
        args = []
        for _ in range(n_args):
            pick = draw(st.integers(0, 19)) if not clean else 3
            if pick == 0:
                args.append("missing_initializer")
            elif pick == 1:
                args.append(f"v{k + 1}")  # a later node's output: a cycle
            elif pick == 2:
                args.append("")  # an omitted optional input
            else:
                args.append(draw(st.sampled_from(values)))
        attrs = {a: draw(s) for a, s in attr_st.items() if draw(st.booleans())}
        outs = [f"v{k}"] + ([f"v{k}_b"] if op in ("Split", "TopK") else [])
        nodes.append(helper.make_node(op, args, outs, name=f"n{k}", **attrs))
        values.extend(outs)
    out_names = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
    if not clean and draw(st.integers(0, 4)) == 0:
        out_names.append("never_defined")
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in out_names]
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, initializer=inits)
    opset = draw(st.sampled_from([13, 17, 21] if clean else [7, 13, 17, 21, 99]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if clean else draw(st.sampled_from([3, 8, 10]))
    return model


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with 1-4 byte-level mutations (flip, overwrite, insert, delete, truncate)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate", "int"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[pos:]
        else:  # an interesting integer (sizes, counts, offsets)
            val = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1]))
            width = draw(st.sampled_from([1, 2, 4, 8]))
            data[pos:pos + width] = (val & ((1 << 8 * width) - 1)).to_bytes(width, "little")
    return bytes(data)


# ------------------------------------------------------------------ artifacts
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64), st.floats(allow_nan=True),
              st.text(max_size=12), st.sampled_from(["float32", "bfloat16", "x86_64", "aarch64",
                                                     "batch", "2*batch", "lib/model.so", "0.1.0"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _safetensors_edit(draw, blob: bytes) -> bytes:
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    paths = [p for p in _paths(header) if p]
    if paths:
        _set(header, draw(st.sampled_from(paths)), draw(JSON_VALUES))
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + blob[8 + n:]


@st.composite
def artifact_edits(draw, seeds: list[bytes]) -> bytes:
    """A seed artifact with manifest / weights edits and the hashes made consistent again."""
    from llmc.runtime.format import sha256

    with zipfile.ZipFile(io.BytesIO(draw(st.sampled_from(seeds)))) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["manifest", "manifest", "weights", "drop", "add"]))
        if kind == "manifest":
            paths = [p for p in _paths(manifest) if p and p[0] not in ("members",)]
            _set(manifest, draw(st.sampled_from(paths)), draw(JSON_VALUES))
        elif kind == "weights" and "weights.safetensors" in members:
            members["weights.safetensors"] = _safetensors_edit(draw, members["weights.safetensors"])
        elif kind == "drop" and members:
            members.pop(draw(st.sampled_from(sorted(members))))
        elif kind == "add":
            members[draw(st.sampled_from(["evil.pkl", "lib/other.so", "../x"]))] = b"\x80\x04K\x01."
    if draw(st.integers(0, 4)):  # usually re-hash, so the deeper checks run
        manifest["members"] = {n: sha256(d) for n, d in members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()

"""x86 kernels of the blocked layout (conv2d_nchwc, pool2d_nchwc, layout_transform) and of
fused conv epilogues (plain and blocked); the ResNet CNN compiled at O3 against PyTorch.

Golden values: the numpy reference of the graph before any pass, PyTorch for the CNN.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llmc.backends import x86
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.passes import run_passes
from llmc.passes.layout import count_transforms, layout_options
from llmc.passes.numerics import random_inputs


def _conv(g: Graph, x: str, cout: int, k: int = 3, stride: int = 1, pads=None,
          seed: int = 0) -> str:
    cin = g.types[x].shape[1]
    rng = np.random.default_rng(seed)
    w = g.add_constant((rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k))
                       .astype(np.float32), "w")
    b = g.add_constant(rng.standard_normal(cout).astype(np.float32), "b")
    p = pads if pads is not None else [k // 2] * 4
    (y,) = g.add_node("conv", [x, w, b], {"strides": [stride, stride], "pads": p,
                                          "dilations": [1, 1], "group": 1})
    return y


def _build_and_compare(g: Graph, passes, inputs_list, target="x86", block=16):
    with layout_options(target, block=block):
        out, _ = run_passes(g, passes=passes, verify=True)
    res = x86.build(out)
    assert "none" not in res.schedules.values()
    for inputs in inputs_list:
        want = run_reference(g, inputs)
        got = x86.run(res, inputs, out.constants)
        for k in g.outputs:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4)
    return out, res


def test_blocked_convs_with_epilogues_and_pools():
    g = Graph("blk")
    x = g.add_input("x", "float32", ["n", 16, 14, 14])
    (y,) = g.add_node("relu", [_conv(g, x, 32, seed=1)])                 # 14 = reg 14
    y2 = _conv(g, y, 32, seed=2)
    (y,) = g.add_node("add", [y2, y])                                      # residual
    (y,) = g.add_node("clip", [y], {"min": 0.0, "max": 6.0})
    (y,) = g.add_node("max_pool", [y], {"kernel": [3, 3], "strides": [2, 2],
                                         "pads": [1, 1, 1, 1], "dilations": [1, 1],
                                         "ceil_mode": 0})                   # 7x7
    y = _conv(g, y, 64, k=1, stride=2, pads=[0, 0, 0, 0], seed=3)          # 4x4, no pad
    scale = g.add_constant(np.linspace(0.5, 2, 64, dtype=np.float32).reshape(64, 1, 1), "s")
    (y,) = g.add_node("mul", [y, scale])
    (y,) = g.add_node("silu", [y])
    (p,) = g.add_node("avg_pool", [y], {"kernel": [2, 2], "strides": [1, 1], "pads": [0] * 4,
                                         "dilations": [1, 1], "ceil_mode": 0,
                                         "count_include_pad": 0})
    (q,) = g.add_node("global_avg_pool", [y])
    g.set_outputs([p, q])
    inputs = [random_inputs(g, seed=s, bindings={"n": n}) for s, n in ((0, 1), (1, 3))]
    out, res = _build_and_compare(g, ["layout", "fuse"], inputs)
    kinds = [n.attrs["kind"] for n in out.nodes if n.op == "fused"]
    assert kinds.count("conv_epilogue") == 3
    used = set(res.schedules.values())
    assert {"fused_conv_epilogue", "pool_nchwc"} <= used
    assert count_transforms(out) == 3  # in; out for each of the two results


def test_plain_conv_epilogue_is_one_kernel():
    g = Graph("plain")
    x = g.add_input("x", "float32", [2, 3, 10, 10])
    y = _conv(g, x, 8, seed=4)
    r = g.add_input("r", "float32", [2, 8, 10, 10])
    (y,) = g.add_node("add", [y, r])
    (y,) = g.add_node("sigmoid", [y])
    g.set_outputs([y])
    out, res = _build_and_compare(g, ["layout", "fuse"], [random_inputs(g, seed=0)])
    assert [n.op for n in out.nodes] == ["fused"] and res.launches == 1
    assert list(res.schedules.values()) == ["fused_conv_epilogue"]


def test_symbolic_spatial_dims_and_block_8():
    g = Graph("sym")
    x = g.add_input("x", "float32", [1, 8, "h", "w"])
    (y,) = g.add_node("relu", [_conv(g, x, 16, seed=5)])
    y = _conv(g, y, 8, stride=2, seed=6)
    g.set_outputs([y])
    inputs = [random_inputs(g, seed=s, bindings={"h": h, "w": w})
              for s, (h, w) in enumerate(((9, 11), (16, 5)))]
    out, _ = _build_and_compare(g, ["layout", "fuse"], inputs, block=8)
    assert sum(b.op == "conv2d_nchwc" for n in out.nodes
               for b in (n.attrs["body"].nodes if n.op == "fused" else [n])) == 2


def test_resnet_cnn_compiled_at_o3_matches_pytorch(resnet_model):
    import models
    import llmc

    x = models.resnet_input(batch=2)
    art = llmc.compile(resnet_model, target="x86", example_inputs=(x,),
                       dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    assert any("nchwc" in k for k in art.manifest["kernels"])
    for batch in (1, 3):
        xb = models.resnet_input(batch=batch, seed=batch)
        with torch.no_grad():
            want = resnet_model(xb).numpy()
        got = art.run({art.manifest["inputs"][0]["name"]: xb.numpy()})
        got = got[0] if isinstance(got, (list, tuple)) else next(iter(got.values()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", [None, "x86"])
def test_resnet_cnn_layout_on_and_off_agree(resnet_model, target):
    import models
    from llmc.frontends.torch import import_torch

    x = models.resnet_input(batch=2)
    g = import_torch(resnet_model, (x,))
    with layout_options(target):
        out, _ = run_passes(g, "O3")
    res = x86.build(out)
    with torch.no_grad():
        want = resnet_model(x).numpy()
    got = x86.run(res, {g.inputs[0]: x.numpy()}, out.constants)[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    want_kinds = {"fused_conv_epilogue"} | ({"conv_nchwc"} if target else {"conv"})
    assert want_kinds <= set(res.schedules.values())


def test_blocked_conv_with_uneven_pads_strides_and_dilations():
    g = Graph("odd")
    x = g.add_input("x", "float32", [2, 16, 11, 9])
    rng = np.random.default_rng(7)
    w = g.add_constant(rng.standard_normal((32, 16, 3, 2)).astype(np.float32) / 8, "w")
    (y,) = g.add_node("conv", [x, w], {"strides": [1, 2], "pads": [1, 0, 2, 1],
                                       "dilations": [2, 1], "group": 1})
    (y,) = g.add_node("leaky_relu", [y], {"alpha": 0.1})
    g.set_outputs([y])
    out, res = _build_and_compare(g, ["layout", "fuse"], [random_inputs(g, seed=3)])
    assert "fused_conv_epilogue" in res.schedules.values()
    assert any(b.op == "conv2d_nchwc" for n in out.nodes if n.op == "fused"
               for b in n.attrs["body"].nodes)

"""fold_batchnorm: conv/matmul + constant batch_norm become one conv/matmul(+bias)."""
from __future__ import annotations

import numpy as np

from llmc.ir import Graph

from passes_testutil import body_ops, check, const, ops

RNG = np.random.default_rng(0)
CONV = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}


def _bn_params(g: Graph, c: int) -> list[str]:
    return [const(g, RNG.uniform(0.5, 2, c), name="scale"), const(g, RNG.standard_normal(c)),
            const(g, RNG.standard_normal(c)), const(g, RNG.uniform(0.5, 2, c), name="var")]


def _conv_bn(bias: bool, group: int = 1, extra_use: bool = False, param_input: bool = False):
    g = Graph("t")
    x = g.add_input("x", "float32", ["n", 4, 6, 6])
    w = const(g, RNG.standard_normal((8, 4 // group, 3, 3)), name="w")
    ins = [x, w] + ([const(g, RNG.standard_normal(8), name="b")] if bias else [])
    (y,) = g.add_node("conv", ins, {**CONV, "group": group})
    params = _bn_params(g, 8)
    if param_input:
        params[0] = g.add_input("scale_in", "float32", [8])
    (z,) = g.add_node("batch_norm", [y] + params, {"epsilon": 1e-5})
    (r,) = g.add_node("relu", [z], outputs=["out"])
    outs = [r]
    if extra_use:
        outs.append(g.add_node("exp", [y], outputs=["other"])[0])
    g.set_outputs(outs)
    return g


def test_conv_bn_folded_with_and_without_bias():
    for bias, group in ((True, 1), (False, 1), (True, 2)):
        out = check(_conv_bn(bias, group), passes=["fold_batchnorm", "dce"], atol=1e-5)
        assert ops(out) == {"conv": 1, "relu": 1}, (bias, group)
        assert out.nodes[0].attrs["group"] == group


def test_conv_bn_not_folded_when_conv_result_is_used_elsewhere_or_params_vary():
    out = check(_conv_bn(True, extra_use=True), passes=["fold_batchnorm", "dce"])
    assert ops(out) == {"conv": 1, "batch_norm": 1, "relu": 1, "exp": 1}
    g = _conv_bn(True, param_input=True)
    inputs = {"x": RNG.standard_normal((2, 4, 6, 6)).astype(np.float32),
              "scale_in": RNG.uniform(0.5, 2, 8).astype(np.float32)}
    out = check(g, passes=["fold_batchnorm", "dce"], inputs=inputs)
    assert ops(out) == {"conv": 1, "batch_norm": 1, "relu": 1}


def test_matmul_bn_folded_into_weight_and_bias():
    g = Graph("t")
    x = g.add_input("x", "float32", ["n", 5])
    (y,) = g.add_node("matmul", [x, const(g, RNG.standard_normal((5, 3)), name="w")])
    (z,) = g.add_node("batch_norm", [y] + _bn_params(g, 3), {"epsilon": 1e-3}, outputs=["z"])
    g.set_outputs([z])
    out = check(g, passes=["fold_batchnorm", "dce"], atol=1e-5)
    assert ops(out) == {"matmul": 1, "add": 1}


def test_resnet_from_torch_loses_every_batch_norm(resnet_model):
    import models
    import torch

    from llmc.frontends.torch import import_torch
    from llmc.interpreter import run_reference
    from llmc.passes import run_passes

    x = models.resnet_input(batch=2)
    g = import_torch(resnet_model, (x,))
    n_bn = ops(g)["batch_norm"]
    assert n_bn > 0
    out, report = run_passes(g, level="O3", verify=True, check_numerics={"x": x.numpy()},
                             rtol=1e-4, atol=1e-5)
    # O3 fuses each conv with its epilogue: count convs inside fused groups too
    assert "batch_norm" not in body_ops(out) and body_ops(out)["conv"] == ops(g)["conv"]
    fold = next(r for r in report.rows if r.name == "fold_batchnorm")
    assert fold.nodes_before - fold.nodes_after >= n_bn
    with torch.no_grad():
        want = resnet_model(x).numpy()
    (got,) = run_reference(out, {"x": x.numpy()}).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

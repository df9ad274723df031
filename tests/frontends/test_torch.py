"""The torch.export frontend: imported graphs run by the numpy reference match PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models
from llmc import dims as D
from llmc.errors import FrontendError, UnsupportedOpError
from llmc.frontends.torch import import_torch, supported_ops
from llmc.interpreter import run_reference

RTOL, ATOL = 1e-3, 1e-4


def _run(graph, *tensors: torch.Tensor) -> list[np.ndarray]:
    feed = {name: t.detach().numpy() for name, t in zip(graph.inputs, tensors)}
    out = run_reference(graph, feed)
    return [out[o] for o in graph.outputs]


def _torch(module: nn.Module, *tensors: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        res = module(*tensors)
    res = res if isinstance(res, (tuple, list)) else (res,)
    return [r.detach().numpy() for r in res]


def _assert_matches(graph, module, *tensors, rtol=RTOL, atol=ATOL) -> None:
    got = _run(graph, *tensors)
    want = _torch(module, *tensors)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def _ops(graph) -> set[str]:
    return {n.op for n in graph.nodes}


# --------------------------------------------------------------------------- model families
def test_resnet_cnn_dynamic_batch(resnet_model):
    batch = torch.export.Dim("batch", min=2, max=32)
    g = import_torch(resnet_model, (models.resnet_input(2),), dynamic_shapes=({0: batch},),
                     input_names=["image"])
    assert g.inputs == ["image"] and g.outputs == ["output_0"]
    assert g.types["image"].shape == (D.sym("batch"), 3, 32, 32)
    assert {"conv", "batch_norm", "max_pool", "relu", "global_avg_pool", "matmul"} <= _ops(g)
    for n in (2, 3):
        _assert_matches(g, resnet_model, models.resnet_input(n, seed=n))


def test_gpt2_block_dynamic_batch_and_seq(gpt2_model):
    b, t = torch.export.Dim("batch", min=2, max=16), torch.export.Dim("seq", min=2, max=512)
    g = import_torch(gpt2_model, (models.gpt2_input(2, 8),), dynamic_shapes=({0: b, 1: t},))
    assert g.types[g.inputs[0]].shape == (D.sym("batch"), D.sym("seq"), 256)
    assert g.types["output_0"].shape == (D.sym("batch"), D.sym("seq"), 256)
    assert {"layer_norm", "softmax", "gelu", "matmul"} <= _ops(g)
    assert [n.attrs["approximate"] for n in g.nodes if n.op == "gelu"] == ["tanh"]
    for shape in ((2, 8), (3, 5)):
        _assert_matches(g, gpt2_model, models.gpt2_input(*shape, seed=sum(shape)))


def test_llama_block_gqa_rope_rmsnorm():
    m = models.llama_block()
    b, t = torch.export.Dim("batch", min=2, max=8), torch.export.Dim("seq", min=2, max=256)
    g = import_torch(m, (torch.randn(2, 7, 64),), dynamic_shapes=({0: b, 1: t},))
    assert {"rms_norm", "attention", "silu", "cos", "sin", "range"} <= _ops(g)
    (att,) = [n for n in g.nodes if n.op == "attention"]
    assert g.types[att.inputs[0]].shape[1] == 4 and g.types[att.inputs[1]].shape[1] == 2
    for shape in ((2, 7, 64), (3, 11, 64)):
        _assert_matches(g, m, torch.randn(*shape))


class _SDPA(nn.Module):
    def __init__(self, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.proj = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.proj(x).view(b, t, 3, 2, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)


def test_sdpa_causal_becomes_attention():
    torch.manual_seed(0)
    m = _SDPA(causal=True).eval()
    t = torch.export.Dim("seq", min=2, max=128)
    g = import_torch(m, (torch.randn(2, 6, 16),), dynamic_shapes=({1: t},))
    att = [n for n in g.nodes if n.op == "attention"]
    assert len(att) == 1 and att[0].attrs["is_causal"] is True
    assert "softmax" not in _ops(g)  # kept whole, not decomposed
    for seq in (6, 9):
        _assert_matches(g, m, torch.randn(2, seq, 16))


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_with_mask(kind):
    torch.manual_seed(1)
    m = _SDPA(causal=False).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True  # no fully masked rows
    if kind == "float":
        mask = torch.where(mask, 0.0, -1e4) + torch.randn(2, 1, 5, 5) * 0.1
    g = import_torch(m, (x, mask))
    att = [n for n in g.nodes if n.op == "attention"]
    assert len(att) == 1 and len(att[0].inputs) == 4 and att[0].attrs["is_causal"] is False
    assert g.types[g.inputs[1]].dtype == ("bool" if kind == "bool" else "float32")
    _assert_matches(g, m, x, mask)


@pytest.mark.slow
def test_minilm_real_weights_dynamic(minilm_model, minilm_inputs):
    ids, mask = minilm_inputs
    assert ids.shape[0] >= 3 and ids.shape[1] >= 3 and (mask == 0).any()  # some padding
    b, s = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("seq", min=2, max=512)
    g = import_torch(minilm_model, (ids, mask), dynamic_shapes={"input_ids": {0: b, 1: s},
                                                                "attention_mask": {0: b, 1: s}},
                     output_names=["last_hidden_state"])
    assert g.inputs == ["input_ids", "attention_mask"]
    for name in g.inputs:
        assert g.types[name] == g.types["input_ids"]
        assert g.types[name].shape == (D.sym("batch"), D.sym("seq"))
    assert g.outputs == ["last_hidden_state"]
    assert g.types["last_hidden_state"].shape == (D.sym("batch"), D.sym("seq"), 384)
    assert "bert.encoder.layer.5.output.dense.weight" in g.constants
    _assert_matches(g, minilm_model, ids, mask)
    short_ids, short_mask = ids[1:, :7].clone(), mask[1:, :7].clone()
    short_mask[0, -2:] = 0
    _assert_matches(g, minilm_model, short_ids, short_mask)


@pytest.mark.slow
def test_minilm_sdpa_becomes_attention(minilm_inputs):
    """transformers' sdpa attention path: the kept SDPA op lowers to llmc's attention."""
    model = models.minilm("sdpa")
    ids, mask = minilm_inputs
    b, s = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("seq", min=2, max=512)
    g = import_torch(model, (ids, mask), dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}))
    assert sum(n.op == "attention" for n in g.nodes) == 6 and "softmax" not in _ops(g)
    _assert_matches(g, model, ids, mask)
    _assert_matches(g, model, ids[:2, :5].clone(), mask[:2, :5].clone())


def test_minilm_onnx_export_produces_file(minilm_onnx_path, minilm_model, minilm_inputs):
    import onnx
    import onnxruntime as ort
    assert minilm_onnx_path.is_file() and minilm_onnx_path.stat().st_size > 50_000_000
    proto = onnx.load(str(minilm_onnx_path), load_external_data=False)
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in proto.graph.output] == ["last_hidden_state"]
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert all(dims), f"batch and seq must be dynamic, got {dims}"
    ids, mask = minilm_inputs
    sess = ort.InferenceSession(str(minilm_onnx_path), providers=["CPUExecutionProvider"])
    for i, m in ((ids, mask), (ids[:2, :6], mask[:2, :6])):
        got = sess.run(None, {"input_ids": i.numpy(), "attention_mask": m.numpy()})[0]
        np.testing.assert_allclose(got, _torch(minilm_model, i, m)[0], rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- API behaviour
def test_exported_program_and_symbol_names():
    class M(nn.Module):
        def forward(self, x, y):
            return x * 2 + y.mean(dim=0, keepdim=True), x.sum(dim=1)

    n = torch.export.Dim("n", min=2, max=100)
    ep = torch.export.export(M(), (torch.randn(3, 4), torch.randn(3, 4)),
                             dynamic_shapes=({0: n}, {0: n}))
    g = import_torch(ep)  # no names known: torch's own symbol
    (sym,) = D.symbols(g.types["x"].shape[0])
    assert sym.startswith("s")
    g = import_torch(ep, dynamic_shapes=({0: n}, {0: n}), input_names=["a", "b"],
                     output_names=["u", "v"])
    assert g.inputs == ["a", "b"] and g.outputs == ["u", "v"]
    assert g.types["a"].shape == (D.sym("n"), 4) and g.types["v"].shape == (D.sym("n"),)
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    _assert_matches(g, M(), x, y)


def test_output_that_is_an_input_gets_identity():
    class M(nn.Module):
        def forward(self, x):
            return x, x + 1

    g = import_torch(M(), (torch.randn(2, 3),))
    assert g.outputs == ["output_0", "output_1"]
    x = torch.randn(2, 3)
    _assert_matches(g, M(), x)


def test_unsupported_op_names_op_and_node():
    class M(nn.Module):
        def forward(self, x):
            return torch.topk(x, 2).values

    with pytest.raises(UnsupportedOpError) as info:
        import_torch(M(), (torch.randn(3, 5),))
    msg = str(info.value)
    assert "aten.topk" in msg and "FX node 'topk'" in msg and "hint" in msg
    assert "aten.topk" not in supported_ops() and "aten.addmm" in supported_ops()


def test_export_failure_is_frontend_error():
    class M(nn.Module):
        def forward(self, x):
            return x + 1

    with pytest.raises(FrontendError, match="example_inputs"):
        import_torch(M())
    with pytest.raises(FrontendError, match="torch.export"):
        bad = {0: torch.export.Dim("batch", min=2, max=8)}
        import_torch(M(), (torch.randn(1, 3),), dynamic_shapes=(bad,))


# --------------------------------------------------------------------------- the op table
def _case(fn, *inputs, dyn=None):
    class M(nn.Module):
        def forward(self, *xs):
            return fn(*xs)
    M.__name__ = fn.__name__ if hasattr(fn, "__name__") else "M"
    return pytest.param(M().eval(), inputs, dyn, id=getattr(fn, "__name__", "case"))


_g = torch.Generator().manual_seed(0)
_x = torch.randn(2, 3, 6, generator=_g)
_img = torch.randn(2, 4, 8, 8, generator=_g)
_ix = torch.randint(-3, 3, (2, 4), generator=_g)


def index_multi(x):  # advanced indexing with broadcast index tensors
    i = torch.arange(x.shape[0]).view(-1, 1)
    j = torch.tensor([[0, 2, -1]])
    return x[i, j] + x[:, [1, 0], 2:].sum()


def index_noncontiguous(x):
    return x[torch.tensor([1, 0]), :, torch.tensor([3, -2])]


def shapes_mix(x):
    a, b = x.split([2, 4], dim=-1)
    y = torch.cat([b, a * 2], dim=2).unsqueeze(1).transpose(1, 3).squeeze(3)
    z = torch.stack(list(x.unbind(1)), dim=-1).flip(0)
    return y.reshape(2, -1) @ torch.ones(18, 3), z[:, -2:, ::2], x.select(1, -1).repeat(2, 1, 2)


def arith_mix(x):
    i = (x * 10).to(torch.int64)
    return (torch.div(i, 3, rounding_mode="floor"), torch.div(i, 3, rounding_mode="trunc"),
            torch.div(x, 0.3, rounding_mode="floor"), i % 4, torch.fmod(x, 0.7), i / 4,
            torch.clamp(x, -0.5, 0.4), x.clamp(min=0.1), torch.maximum(x, x.flip(0)),
            x.pow(3) - torch.rsqrt(x.abs() + 1) + torch.erf(x) + 2 ** x, torch.sub(x, x, alpha=2))


def compare_logic(x):
    a, b = x > 0, x <= 0.5
    return (a & b, a | ~b, a ^ b, torch.logical_not(a), x == x.flip(0), x != 0, (x >= 0.1).int(),
            torch.where(a, x, -x), x.masked_fill(b, -1.0), torch.isnan(x.log()))


def reductions(x):
    v, m = torch.var_mean(x, dim=(0, 2), keepdim=True)
    mx, arg = x.max(dim=1)
    return (x.amax(dim=(1, 2)), x.amin(-1, keepdim=True), x.sum(), x.mean(dim=-1),
            torch.std(x, dim=1, unbiased=False), v, m, mx, arg, x.argmin(dim=2),
            x.cumsum(dim=2), torch.logsumexp(x, dim=-1), (x > 0).sum(dim=1), (x > 1).any(dim=2),
            x.prod(dim=1))


def creation(x):
    n = x.shape[-1]
    r = torch.arange(n, dtype=torch.float32) * 0.5 + torch.arange(2, 2 * n + 2, 2)
    return (x + r, torch.full((2, 1, 1), 3.0), torch.zeros_like(x).long() + 1,
            torch.ones(3, dtype=torch.bool), torch.triu(x, 1), torch.tril(x, -1),
            x.new_full((2,), 7.0))


def activations(x):
    return (F.silu(x), F.hardswish(x), F.hardsigmoid(x), F.leaky_relu(x, 0.2), F.elu(x),
            F.softplus(x), F.softplus(x, beta=2.0), F.mish(x), F.gelu(x), torch.sigmoid(x),
            torch.tanh(x), F.relu6(x * 5), F.log_softmax(x, dim=1), F.softmax(x, dim=0),
            torch.log1p(x.abs()), torch.expm1(x), F.selu(x), F.celu(x))


def norms(x):
    ln = F.layer_norm(x, (3, 6), eps=1e-5)
    rms = F.rms_norm(x, (6,), weight=torch.linspace(0.5, 1.5, 6), eps=1e-6)
    gn = F.group_norm(x.reshape(2, 6, 3), 3, weight=torch.arange(6.0), bias=torch.ones(6))
    return ln, rms, gn


def cnn_ops(img):
    w = torch.linspace(-1, 1, 8 * 2 * 3 * 3).reshape(8, 2, 3, 3)
    y = F.conv2d(img, w, stride=2, padding=1, groups=2)
    t = F.conv_transpose2d(img, torch.linspace(-1, 1, 4 * 3 * 2 * 2).reshape(4, 3, 2, 2),
                           stride=2)
    return (y, t, F.avg_pool2d(img, 3, stride=2, padding=1), F.max_pool2d(img, 3, 2, 1),
            F.adaptive_avg_pool2d(img, 2), F.adaptive_max_pool2d(img, 1),
            F.pad(img, (1, 2, 0, 1), value=0.5), F.pad(img, (2, 1, 1, 1), mode="reflect"),
            F.pad(img, (1, 0, 2, 1), mode="replicate"),
            F.conv1d(img.flatten(2), torch.ones(3, 4, 5) * 0.1, padding=2))


def gathers(x, idx):
    emb = F.embedding(idx.abs(), torch.arange(40.0).reshape(10, 4))
    return (emb, x.index_select(2, torch.tensor([0, 5, 2])),
            torch.gather(x, 2, idx.abs()[:, None, :]),
            x.scatter(2, torch.zeros(2, 3, 1, dtype=torch.int64), 5.0))


def linear_alg(x):
    w = torch.linspace(-1, 1, 6 * 5).reshape(5, 6)
    return (F.linear(x, w, torch.ones(5)), torch.bmm(x, x.transpose(1, 2)),
            torch.addmm(torch.ones(6), x[0].t(), x[1], beta=0.5, alpha=2.0),
            torch.baddbmm(torch.ones(2, 3, 3), x, x.transpose(1, 2), alpha=0.5))


def dynamic_shape_arith(x):
    b, t = x.shape[0], x.shape[1]
    pos = torch.arange(t).unsqueeze(0).expand(b, t)
    y = x.view(b * t, -1)[: b * t - 1]
    return x + pos.unsqueeze(-1).float(), y.sum(0) / t, x[:, 1:-1]


OP_CASES = [
    _case(index_multi, _x),
    _case(index_noncontiguous, torch.randn(3, 2, 5, generator=_g)),
    _case(shapes_mix, _x),
    _case(arith_mix, _x),
    _case(compare_logic, _x),
    _case(reductions, _x),
    _case(creation, _x),
    _case(activations, _x),
    _case(norms, _x),
    _case(cnn_ops, _img),
    _case(gathers, _x, _ix),
    _case(linear_alg, _x),
]


@pytest.mark.parametrize("module,inputs,dyn", OP_CASES)
def test_op_table(module, inputs, dyn):
    g = import_torch(module, inputs, dynamic_shapes=dyn)
    g.verify()
    _assert_matches(g, module, *inputs, rtol=1e-4, atol=1e-5)


def test_symbolic_shape_arithmetic():
    class M(nn.Module):
        def forward(self, x):
            return dynamic_shape_arith(x)

    b, t = torch.export.Dim("batch", min=2, max=16), torch.export.Dim("seq", min=4, max=64)
    g = import_torch(M(), (torch.randn(3, 6, 4),), dynamic_shapes=({0: b, 1: t},))
    batch = D.sym("batch")
    assert D.symbols(g.types["output_2"].shape[1]) == {"seq"}
    assert D.evaluate(g.types["output_2"].shape[1], {"seq": 9}) == 7
    assert g.types["output_1"].shape == (4,)
    for shape in ((3, 6, 4), (2, 9, 4)):
        _assert_matches(g, M(), torch.randn(*shape))
    assert batch in g.types["output_0"].shape

"""Symbolic dims: normalization, parsing, evaluation, broadcasting."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from llmc import dims as D
from llmc.errors import ShapeError

B, S = D.sym("batch"), D.sym("seq")


def test_sym_is_cached_positive_integer():
    assert D.sym("batch") is B
    assert B.is_integer and B.is_positive
    with pytest.raises(ShapeError, match="invalid symbolic dim name"):
        D.sym("")


@pytest.mark.parametrize("value,want", [
    (3, 3), (np.int64(4), 4), (sympy.Integer(5), 5), ("7", 7), ("batch", B),
    ("batch*seq", B * S), (B * S / S, B),
])
def test_dim_normalizes(value, want):
    got = D.dim(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("bad,msg", [(True, "cannot be a bool"), (2.5, "cannot use 2.5"),
                                     (sympy.Rational(1, 2), "not an integer")])
def test_dim_rejects(bad, msg):
    with pytest.raises(ShapeError, match=msg):
        D.dim(bad)


@pytest.mark.parametrize("d", [B * S, S + 1, sympy.floor(S / 2), 2 * B * S + 3,
                               sympy.Max(S, 4)])
def test_parse_roundtrip(d):
    d = D.dim(d)
    assert D.equal(D.parse_dim(D.dim_str(d)), d)


def test_parse_error():
    with pytest.raises(ShapeError, match="cannot parse dim"):
        D.parse_dim("seq +* 2")


def test_evaluate():
    assert D.evaluate(D.floordiv(S - 1, 2) + 1, {"seq": 9}) == 5
    assert D.evaluate(7, {}) == 7
    with pytest.raises(ShapeError, match="needs values for seq"):
        D.evaluate(B * S, {"batch": 2})


def test_product_floordiv_equal():
    assert D.product([B, S, 4]) == 4 * B * S
    assert D.product([2, 3]) == 6 and isinstance(D.product([2, 3]), int)
    assert D.floordiv(7, 2) == 3
    assert D.floordiv(2 * S, 2) == S
    assert D.equal(B * S / S, B) and not D.equal(B, S) and D.equal(4, 4)


@pytest.mark.parametrize("a,b,want", [
    ((B, 1, 4), (S, 1), (B, S, 4)),
    ((B, S), (1, S), (B, S)),
    ((3, 1), (4,), (3, 4)),
    ((B,), (5,), (5,)),          # symbol against static n: n (checked at run time)
    ((), (B, 2), (B, 2)),
])
def test_broadcast(a, b, want):
    assert D.broadcast(a, b) == want


def test_broadcast_errors():
    with pytest.raises(ShapeError, match=r"\[batch\] and \[seq\] do not broadcast in here"):
        D.broadcast((B,), (S,), "here")
    with pytest.raises(ShapeError, match=r"dim 3 vs 4"):
        D.broadcast((3,), (4,))


def test_shape_str_and_symbols():
    assert D.shape_str((B, S + 1, 3)) == "[batch, seq + 1, 3]"
    assert D.symbols(B * S) == {"batch", "seq"} and D.symbols(3) == set()
    assert D.is_static_shape((1, 2)) and not D.is_static_shape((B, 2))

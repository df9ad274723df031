"""Calibrators, per-channel weight scales, SmoothQuant, pruning masks."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.errors import InputError
from llmc.passes.prune import magnitude_mask, mask_2_4, parse_prune
from llmc.passes.quantize import (activation_amax, entropy_amax, quantize_weight_int8,
                                  smooth_factors)

RNG = np.random.default_rng(1)


def test_minmax_and_percentile():
    x = RNG.standard_normal((1000, 64)).astype(np.float32)
    x[3, 5] = 80.0  # one outlier
    assert activation_amax(x, "minmax") == pytest.approx(80.0)
    p = activation_amax(x, "percentile")
    assert p == pytest.approx(np.percentile(np.abs(x), 99.99), rel=1e-6)
    assert p < 10.0  # the outlier is clipped


def test_entropy_clips_long_tail_of_gaussian():
    x = RNG.standard_normal(200_000).astype(np.float32)
    x[:5] = 40.0
    a = entropy_amax(np.abs(x))
    assert 2.0 < a < 20.0  # well inside max=40, beyond the bulk
    # a uniform distribution has no tail to clip: the threshold stays near the max
    u = RNG.uniform(-1, 1, 100_000).astype(np.float32)
    assert entropy_amax(np.abs(u)) > 0.9
    with pytest.raises(InputError):
        activation_amax(x, "bogus")


def test_per_channel_weight_scales():
    w = RNG.standard_normal((32, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    q, s = quantize_weight_int8(w)
    assert q.shape == (8, 32) and q.dtype == np.int8
    np.testing.assert_allclose(s, np.abs(w).max(axis=0) / 127, rtol=1e-6)
    assert np.abs(q).max(axis=1).tolist() == [127] * 8
    np.testing.assert_allclose(q.T * s, w, atol=s.max() / 2 + 1e-6)


def test_smoothquant_preserves_product():
    x = RNG.standard_normal((16, 24)).astype(np.float32)
    x[:, 3] *= 50
    w = RNG.standard_normal((24, 10)).astype(np.float32)
    s = smooth_factors(np.abs(x).max(0), w, 0.5)
    np.testing.assert_allclose((x / s) @ (w * s[:, None]), x @ w, rtol=1e-4, atol=1e-3)
    assert np.abs(x / s).max(0)[3] < np.abs(x).max(0)[3] / 3  # the outlier channel shrank


def test_2_4_mask_structure():
    w = RNG.standard_normal((64, 12)).astype(np.float32)
    m = mask_2_4(w, 0)
    groups = m.reshape(16, 4, 12)
    assert (groups.sum(axis=1) == 2).all()
    wa = np.abs(w).reshape(16, 4, 12)
    kept_min = np.where(groups, wa, np.inf).min(axis=1)
    dropped_max = np.where(groups, -np.inf, wa).max(axis=1)
    assert (kept_min >= dropped_max).all()  # the two largest of every group survive


def test_magnitude_mask_sparsity():
    w = RNG.standard_normal((50, 40)).astype(np.float32)
    m = magnitude_mask(w, 0.3)
    assert abs((1 - m.mean()) - 0.3) < 1e-3
    assert np.abs(w[~m]).max() <= np.abs(w[m]).min()
    assert parse_prune("2:4") == ("2:4", 0.5) and parse_prune("magnitude:0.7")[1] == 0.7
    with pytest.raises(InputError):
        parse_prune("half")

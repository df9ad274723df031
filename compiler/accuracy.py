"""Accuracy of a lowered-precision model against its fp32 original, and accuracy budgets.

Why: a quantized or half-precision compile is only useful with evidence of what it costs. The
report compares outputs on calibration/validation batches: max abs error, max relative error
(max |y - y_ref| / max |y_ref|), relative L2 error, cosine similarity per output, top-1
agreement for classifiers, perplexity when labels are given (language models), per-layer
sensitivity and the weight bytes before and after. :class:`Budget` is the ``--accuracy-budget``
check the mixed-precision search uses.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import InputError
from .interpreter import run_reference
from .ir import Graph

Outputs = Mapping[str, np.ndarray]


def output_metrics(ref: Sequence[np.ndarray], got: Sequence[np.ndarray],
                   classifier: bool = False) -> dict:
    """Error figures of one output over several batches (arrays concatenated)."""
    r = np.concatenate([np.asarray(a, np.float64).ravel() for a in ref])
    g = np.concatenate([np.asarray(a, np.float64).ravel() for a in got])
    d = np.abs(g - r)
    rmax = float(np.abs(r).max()) if r.size else 0.0
    nr, ng = float(np.linalg.norm(r)), float(np.linalg.norm(g))
    m = {"max_abs_error": float(d.max()) if d.size else 0.0,
         "max_rel_error": float(d.max() / rmax) if rmax > 0 else float(d.max() if d.size else 0),
         "rel_l2_error": float(np.linalg.norm(g - r) / nr) if nr > 0 else 0.0,
         "cosine": float(np.dot(r, g) / (nr * ng)) if nr > 0 and ng > 0 else 1.0}
    if classifier:
        agree = [np.mean(np.argmax(a, -1) == np.argmax(b, -1)) for a, b in zip(ref, got)]
        m["top1_agreement"] = float(np.mean(agree))
    return m


def perplexity(logits: np.ndarray, labels: np.ndarray) -> float:
    """exp(mean NLL) of next-token ``labels`` [..., T] under ``logits`` [..., T, V]."""
    lg = logits.astype(np.float64)
    lg = lg - lg.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None].astype(np.int64), -1)[..., 0]
    return float(np.exp(nll.mean()))


def compare_runs(ref: Sequence[Outputs], got: Sequence[Outputs], classifier: bool = False
                 ) -> dict[str, dict]:
    """Metrics per float output name over batches."""
    out = {}
    for name, v in ref[0].items():
        if np.asarray(v).dtype.kind != "f":
            continue
        out[name] = output_metrics([r[name] for r in ref], [g[name] for g in got], classifier)
    return out


@dataclass
class Budget:
    """An accuracy budget: ``metric`` (cosine | rel_l2 | max_rel | max_abs) and its bound.

    Parsed from "cosine:0.999" (cosine >= 0.999 on every output) or "rel_l2:0.02",
    "max_rel:0.05", "max_abs:0.1" (error <= bound on every output).
    """

    metric: str
    bound: float

    KEYS = {"cosine": "cosine", "rel_l2": "rel_l2_error", "max_rel": "max_rel_error",
            "max_abs": "max_abs_error"}

    @classmethod
    def parse(cls, spec: str | "Budget") -> "Budget":
        if isinstance(spec, Budget):
            return spec
        try:
            metric, bound = str(spec).split(":", 1)
            b = cls(metric.strip(), float(bound))
        except ValueError:
            b = None
        if b is None or b.metric not in cls.KEYS:
            raise InputError(f"--accuracy-budget takes METRIC:BOUND with METRIC one of "
                             f"{sorted(cls.KEYS)} (e.g. cosine:0.999 or max_rel:0.05), got {spec!r}")
        return b

    def ok(self, metrics: Mapping[str, dict]) -> bool:
        key = self.KEYS[self.metric]
        vals = [m[key] for m in metrics.values()]
        if self.metric == "cosine":
            return all(v >= self.bound for v in vals)
        return all(v <= self.bound for v in vals)

    def __str__(self) -> str:
        op = ">=" if self.metric == "cosine" else "<="
        return f"{self.metric} {op} {self.bound}"


@dataclass
class AccuracyReport:
    """What ``--accuracy-report out.json`` writes (and ``format`` prints)."""

    precision: str
    batches: int
    outputs: dict[str, dict]
    size_fp32_bytes: int
    size_bytes: int
    layers: list[dict] = field(default_factory=list)
    budget: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=float)

    def save(self, path: str | os.PathLike) -> str:
        with open(path, "w") as fh:
            fh.write(self.to_json())
        return os.fspath(path)

    def format(self) -> str:
        lines = [f"accuracy vs fp32 ({self.precision}, {self.batches} batch(es)); weights "
                 f"{self.size_fp32_bytes / 1e6:.2f} MB -> {self.size_bytes / 1e6:.2f} MB "
                 f"({self.size_fp32_bytes / max(self.size_bytes, 1):.2f}x smaller)"]
        for name, m in self.outputs.items():
            extra = f"  top1 {m['top1_agreement']:.4f}" if "top1_agreement" in m else ""
            extra += f"  ppl {m['perplexity']:.3f} (fp32 {m['perplexity_fp32']:.3f})" \
                if "perplexity" in m else ""
            lines.append(f"  {name}: cos {m['cosine']:.6f}  max_abs {m['max_abs_error']:.4g}  "
                         f"max_rel {m['max_rel_error']:.4g}  rel_l2 {m['rel_l2_error']:.4g}"
                         + extra)
        if self.budget:
            lines.append(f"  budget {self.budget['spec']}: {'met' if self.budget['met'] else 'NOT met'}"
                         f"; kept at higher precision: {self.budget['kept'] or 'none'}")
        sens = sorted((x for x in self.layers if "local_rel_error" in x),
                      key=lambda x: -x["local_rel_error"])[:5]
        if sens:
            lines.append("  most sensitive layers (local rel. error): " +
                         ", ".join(f"{x['name']} {x['local_rel_error']:.3g}" for x in sens))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def accuracy_report(fp32: Graph, lowered: Graph, batches: Sequence[Mapping[str, np.ndarray]],
                    precision: str, run: Callable[[Mapping[str, np.ndarray]], Outputs] | None = None,
                    classifier: bool = False, labels: Sequence[np.ndarray] | None = None,
                    info: Mapping | None = None) -> AccuracyReport:
    """Compare ``lowered`` (run by ``run``, default the numpy reference) with ``fp32``.

    ``run`` lets the report measure the compiled artifact itself (``artifact.run``);
    ``labels`` (one int array per batch) adds perplexity for a language model's first output.
    """
    ref = [run_reference(fp32, b) for b in batches]
    got = [(run or (lambda b: run_reference(lowered, b)))(b) for b in batches]
    got = [{k: np.asarray(v) for k, v in g.items()} for g in got]
    metrics = compare_runs(ref, got, classifier)
    if labels is not None:
        name = fp32.outputs[0]
        # pooled over every token of every batch: exp(mean NLL), not a mean of perplexities
        metrics[name]["perplexity_fp32"] = text_perplexity(lambda b: b, ref, labels, name)
        metrics[name]["perplexity"] = text_perplexity(lambda b: b, got, labels, name)
    info = dict(info or {})
    return AccuracyReport(precision, len(batches), metrics, fp32.constant_bytes(),
                          lowered.constant_bytes(), list(info.get("layers", [])),
                          info.get("budget"), list(info.get("notes", [])))


# ----------------------------------------------------------------------------- perplexity
SHIPPED_TEXT = "pride_and_prejudice_ch1.txt"


def shipped_text(name: str = SHIPPED_TEXT) -> str:
    """A public-domain text the project ships (examples/data/) for perplexity figures."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples",
                        "data", name)
    if not os.path.exists(path):
        raise InputError(f"shipped text {name!r} not found at {os.path.normpath(path)}: it is in "
                         "the source tree's examples/data/ (not installed by a wheel)")
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def byte_tokens(text: str, vocab_size: int = 256) -> np.ndarray:
    """Token ids of a byte-level vocabulary: the UTF-8 bytes, modulo ``vocab_size``.

    Why: the tiny random test decoders have 128-256 ids and no tokenizer; ASCII text fits a
    128-id vocabulary exactly. Real models pass their own tokenizer's ids instead.
    """
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64) % vocab_size


def lm_windows(tokens: Sequence[int] | np.ndarray, window: int, max_windows: int | None = None
               ) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Feeds and next-token labels of an llmc LLM prefill graph over ``tokens``.

    Non-overlapping windows of ``window`` inputs; the labels are the same tokens shifted by
    one (each window reads ``window + 1`` tokens). The feeds are what
    :func:`llmc.llm_graph.build_graph` (``prefill``) takes: ``input_ids``, ``positions`` and a
    causal additive ``mask``. Use with :func:`accuracy_report` (``labels=``) or
    :func:`text_perplexity`.
    """
    from .llm_graph import MASK_MIN
    t = np.asarray(tokens, np.int64).ravel()
    if window < 1 or t.size < window + 1:
        raise InputError(f"perplexity needs at least window + 1 = {window + 1} tokens, got "
                         f"{t.size}")
    count = (t.size - 1) // window
    if max_windows is not None:
        count = min(count, max_windows)
    mask = np.triu(np.full((window, window), MASK_MIN, np.float32), 1)[None, None]
    feeds, labels = [], []
    for i in range(count):
        seg = t[i * window: i * window + window + 1]
        feeds.append({"input_ids": seg[None, :-1], "positions": np.arange(window)[None],
                      "mask": mask})
        labels.append(seg[None, 1:])
    return feeds, labels


def text_perplexity(run: Callable[[Mapping[str, np.ndarray]], Outputs], feeds, labels,
                    output: str = "logits") -> float:
    """exp(mean next-token NLL) over all windows (every token weighs the same)."""
    nll, count = 0.0, 0
    for f, lab in zip(feeds, labels):
        logits = np.asarray(run(f)[output], np.float64)
        n = lab.size
        nll += np.log(perplexity(logits, lab)) * n
        count += n
    return float(np.exp(nll / max(count, 1)))

"""The fuzz oracle shared by the hypothesis targets (CI) and the atheris entry points (on demand).

A fuzz input passes when the call returns normally or raises one of llmc's own errors
(``LlmcError``). Anything else is a finding: another exception type escaping, a run longer
than ``TIME_LIMIT_S`` (a hang), or more than ``MEMORY_LIMIT_BYTES`` allocated (tracemalloc
sees numpy's buffers too). Loading an artifact must never unpickle or run Python from it; the
library member is native code by design and is only ever reached after its sha256 matched.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import tracemalloc
from dataclasses import dataclass, field

from llmc.errors import LlmcError

TIME_LIMIT_S = float(os.environ.get("LLMC_FUZZ_TIME_LIMIT", "10"))
MEMORY_LIMIT_BYTES = int(os.environ.get("LLMC_FUZZ_MEMORY_LIMIT", str(512 << 20)))


class FuzzFinding(AssertionError):
    """A fuzz input broke a rule: a foreign exception, a hang or unbounded memory."""


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in llmc cannot eat it."""


@dataclass
class Stats:
    """What a run reports: executions, inputs llmc accepted, llmc errors by class, findings."""

    executions: int = 0
    accepted: int = 0
    llmc_errors: dict[str, int] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)  # signature -> first message

    def summary(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.llmc_errors.items()))
        return (f"{self.executions} executions, {self.accepted} accepted, llmc errors: "
                f"{errs or 'none'}, unique findings: {len(self.findings)}")


STATS = Stats()


@contextlib.contextmanager
def _guards():
    def on_alarm(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        peak = tracemalloc.get_traced_memory()[1]
        if started:
            tracemalloc.stop()
        if peak > MEMORY_LIMIT_BYTES:
            raise FuzzFinding(f"memory: {peak / 2**20:.0f} MiB allocated (limit "
                              f"{MEMORY_LIMIT_BYTES / 2**20:.0f} MiB)")


def check(fn, *args, **kwargs):
    """Run ``fn`` under the oracle; returns its result (or None when llmc refused the input)."""
    STATS.executions += 1
    try:
        with _guards():
            out = fn(*args, **kwargs)
    except LlmcError as exc:
        name = type(exc).__name__
        STATS.llmc_errors[name] = STATS.llmc_errors.get(name, 0) + 1
        return None
    except _Timeout:
        _finding("hang", f"hang: {fn.__name__} ran longer than {TIME_LIMIT_S} s")
    except FuzzFinding as exc:
        _finding("memory", str(exc))
    except RecursionError as exc:
        _finding("RecursionError", f"RecursionError escaped {fn.__name__}: {exc}")
    except Exception as exc:  # the finding: a non-llmc exception escaped
        import traceback

        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
        _finding(f"{type(exc).__name__}@{where}",
                 f"{type(exc).__name__} escaped {fn.__name__} at {where}: {str(exc)[:300]}")
    STATS.accepted += 1
    return out


def _finding(signature: str, message: str):
    STATS.findings.setdefault(signature, message)
    raise FuzzFinding(message)


def warm_up() -> None:
    """Import what the targets use before any alarm is armed: a first import of TVM takes
    seconds, and an alarm landing inside an import leaves a half-initialized module behind."""
    import onnx  # noqa: F401

    import llmc.frontends.onnx  # noqa: F401
    import llmc.runtime  # noqa: F401
    import tvm.runtime  # noqa: F401
    from tvm.runtime.vm import VirtualMachine  # noqa: F401


# ------------------------------------------------------------------ the targets
def onnx_bytes(data: bytes):
    """The ONNX frontend on a file's bytes (what ``llmc compile model.onnx`` reads)."""
    from llmc.frontends.onnx import import_onnx

    with tempfile.TemporaryDirectory(prefix="llmc-fuzz-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as fh:
            fh.write(data)
        graph = import_onnx(path)
        graph.verify()
        return graph


def onnx_model(proto):
    """The ONNX frontend on a (structurally generated) ModelProto."""
    from llmc.frontends.onnx import import_onnx

    graph = import_onnx(proto)
    graph.verify()
    return graph


def artifact_bytes(data: bytes):
    """The artifact loader on a file's bytes, then the model's signature (no run)."""
    from llmc.runtime import load_bytes

    import numpy as np

    model = load_bytes(data, where="<fuzz>")
    repr(model)
    # then run it once on zeros (symbolic dims = 1): a loaded model must either run or refuse
    # with an llmc error, even when its weights or signature were edited and re-hashed.
    shapes = [[d if isinstance(d, int) else 1 for d in spec.shape] for spec in model.inputs]
    if all(np.prod(s, dtype=np.float64) <= 1 << 20 for s in shapes):
        model.run(*[np.zeros(s, spec.np_dtype) for s, spec in zip(shapes, model.inputs)])
    return model

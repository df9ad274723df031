"""Start or join a Ray cluster: one place that decides, so CLI, API and tests agree.

Ray is an optional dependency (``pip install llmc[distributed]``); it is imported here on
first use so ``import llmc.distributed`` and ``compile_pipeline`` work without it.
"""
from __future__ import annotations

import os
from typing import Any

from llmc.errors import LlmcError


class DistributedError(LlmcError):
    """Ray is missing, a cluster cannot be reached, or a distributed run failed for good."""


def import_ray() -> Any:
    """The ``ray`` module, or a DistributedError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError("llmc's distributed execution needs Ray: "
                               "pip install 'llmc[distributed]' (or pip install ray)") from None
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to a Ray cluster; True if this call connected it
    (then the caller disconnects with :func:`shutdown_ray` when done: that stops a local
    cluster it started, and only detaches from a joined one).

    No ``address`` (and no ``RAY_ADDRESS`` in the environment): start a local cluster with
    ``num_cpus`` CPUs (default: all), no dashboard. An ``address`` ("auto", "host:6379",
    "ray://host:10001") joins an existing cluster. Already connected: nothing happens.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from ray.init
        where = address or "a new local cluster"
        raise DistributedError(f"cannot start or join Ray at {where}: {exc}; check the "
                               "address (llmc ... --ray-address HOST:PORT) or start one with "
                               "`ray start --head`") from None
    return True


def shutdown_ray(started: bool) -> None:
    """Disconnect from Ray if (and only if) ``ensure_ray`` connected this process; a local
    cluster started then stops, a joined cluster keeps running."""
    if started:
        ray = import_ray()
        if ray.is_initialized():
            ray.shutdown()


class ActorGroup:
    """Owns a list of Ray actors and, if it started Ray, the cluster: one close() for both."""

    actors: list
    _started: bool = False

    def close(self) -> None:
        """Stop the actors (and Ray, if this object started it)."""
        if self.actors:
            ray = import_ray()
            for a in self.actors:
                ray.kill(a)
            self.actors = []
        shutdown_ray(self._started)
        self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

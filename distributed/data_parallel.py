"""Data-parallel batch inference: one artifact, a pool of Ray actors, results in order.

Why a hand-rolled pool and not ``ray.util.ActorPool``: a worker that dies mid-run must be
replaced and exactly its unfinished items retried. The driver keeps every item (as an
object reference) until its result is in; a result is stored once, by item index, so an
item is never lost and never counted twice, whatever fails.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import numpy as np

from .cluster import ActorGroup, DistributedError, ensure_ray, import_ray, shutdown_ray
from .worker import ArtifactWorker

__all__ = ["DataParallel"]


class DataParallel(ActorGroup):
    """Apply a compiled artifact to many items with ``workers`` actors.

    Items: dicts of arrays by input name, tuples/lists of arrays (positional), single
    arrays, or ``.npz`` shard paths (the actor opens the file; no data passes through the
    driver). ``depth`` is the number of items queued per actor (2 keeps a worker busy while
    the driver collects). ``max_retries`` bounds how often one item is retried after its
    worker died. ``stats`` counts replaced workers and retried items.
    """

    def __init__(self, artifact_path: str | os.PathLike, workers: int = 2,
                 ray_address: str | None = None, *, threads: int = 1, num_cpus: float = 1,
                 depth: int = 2, max_retries: int = 3, ship_bytes: bool = True) -> None:
        if workers < 1:
            raise DistributedError(f"workers must be at least 1, got {workers}")
        self.artifact_path = os.fspath(artifact_path)
        if not os.path.exists(self.artifact_path):
            raise DistributedError(f"{self.artifact_path}: no such artifact; compile one with "
                                   "`llmc compile`")
        self.depth, self.max_retries = depth, max_retries
        self.threads, self.num_cpus = threads, num_cpus
        self._started = ensure_ray(ray_address)
        ray = import_ray()
        self._cls = ray.remote(ArtifactWorker)
        self._source: Any = self.artifact_path
        if ship_bytes:
            with open(self.artifact_path, "rb") as fh:
                self._source = ray.put(fh.read())
        self.actors = [self._new_actor() for _ in range(workers)]
        self.stats = {"replaced": 0, "retried": 0, "items": 0}

    def _new_actor(self) -> Any:
        return self._cls.options(num_cpus=self.num_cpus).remote(self._source, self.threads)

    def map(self, items: Iterable[Any],
            on_result: Callable[[int, dict], None] | None = None) -> list[dict[str, np.ndarray]]:
        """Outputs for every item, in item order. ``on_result(index, outputs)`` is called as
        results arrive (progress bars; tests kill a worker from it)."""
        ray = import_ray()
        it = iter(enumerate(items))
        exhausted = False
        queue: list[int] = []               # item indices waiting for a worker (retries first)
        item_refs: dict[int, Any] = {}      # index -> object ref of the item, until done
        results: dict[int, dict] = {}
        tries: dict[int, int] = {}
        in_flight: dict[Any, tuple[int, int, Any]] = {}  # task ref -> (index, slot, actor)
        load = [0] * len(self.actors)

        def next_index() -> int | None:
            nonlocal exhausted
            if queue:
                return queue.pop(0)
            if exhausted:
                return None
            try:
                idx, item = next(it)
            except StopIteration:
                exhausted = True
                return None
            item_refs[idx] = item if isinstance(item, (str, os.PathLike)) else ray.put(item)
            tries[idx] = 0
            return idx

        while True:
            for slot in range(len(self.actors)):
                while load[slot] < self.depth:
                    idx = next_index()
                    if idx is None:
                        break
                    actor = self.actors[slot]
                    ref = actor.run_item.remote(item_refs[idx])
                    in_flight[ref] = (idx, slot, actor)
                    load[slot] += 1
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                idx, slot, actor = in_flight.pop(ref)
                if self.actors[slot] is actor:
                    load[slot] -= 1
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayActorError:
                    # the worker died (killed, OOM, node lost): replace it once, retry the item
                    if self.actors[slot] is actor:
                        ray.kill(actor, no_restart=True)
                        self.actors[slot] = self._new_actor()
                        load[slot] = 0
                        self.stats["replaced"] += 1
                    tries[idx] += 1
                    if tries[idx] > self.max_retries:
                        raise DistributedError(f"item {idx} failed {tries[idx]} times because "
                                               "its worker died; giving up") from None
                    self.stats["retried"] += 1
                    queue.insert(0, idx)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") \
                        else exc
                    raise DistributedError(f"item {idx} failed on {self.artifact_path}: "
                                           f"{cause}") from None
                if idx not in results:
                    results[idx] = out
                    self.stats["items"] += 1
                    item_refs.pop(idx, None)
                    if on_result is not None:
                        on_result(idx, out)
        return [results[i] for i in range(len(results))]

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        ray = import_ray()
        return ray.get([a.pid.remote() for a in self.actors])

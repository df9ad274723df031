"""llmc past one machine: pipeline stages and data-parallel inference on Ray.

- :func:`partition` / :func:`llmc.passes.partition.partition_graph`: split a graph into K
  balanced stages with small tensors crossing the cuts.
- :func:`compile_pipeline`: one artifact per stage plus ``pipeline.json``.
- :class:`PipelineRunner`: one Ray actor per stage, micro-batches streamed, results in order.
- :class:`DataParallel`: an artifact mapped over items by a pool of actors; dead workers are
  replaced and their items retried.
Ray is imported only when a runner starts (``pip install 'llmc[distributed]'``).
"""
from __future__ import annotations

from .cluster import DistributedError, ensure_ray, shutdown_ray
from .data_parallel import DataParallel
from .pipeline import (PipelineRunner, compile_pipeline, describe_pipeline, load_manifest,
                       partition, run_distributed, run_pipeline_local)

__all__ = ["DistributedError", "DataParallel", "PipelineRunner", "compile_pipeline",
           "describe_pipeline", "ensure_ray", "load_manifest", "partition", "run_distributed",
           "run_pipeline_local", "shutdown_ray"]

"""Run an LLM artifact: KV-cache management and token generation.

Imports the TVM runtime and numpy only (``tokenizers``, a small Rust wheel without torch, is used
for text in and out when it is installed; token ids work without it).

The KV cache: one tensor per layer and K/V, ``[batch, kv_heads, max_context, head_dim]``,
allocated once per ``generate`` call (on the CPU a TVM tensor that numpy sees through DLPack,
so no copy either way). Prefill returns the prompt's K/V rows, which the runtime writes into the
cache; each decode step gets the whole cache tensors and writes its own new rows in place
(``kv_cache_write``), so a step moves no cache bytes between host and kernels. A batch of
prompts is left-padded: the additive mask hides the padding and positions count real tokens
only (as transformers does), so every row's tokens are those it would get alone. ``generate(..., kv_cache="paged")`` keeps the cache in blocks instead
(:mod:`llmc.runtime.kv_cache`: a block table per row, blocks allocated as rows fill them).
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from llmc.errors import ArtifactError, InputError

MASK_MIN = np.float32(-1e9)


class _Entry:
    """One compiled entry point (prefill or decode): its VM function and parameter tensors."""

    def __init__(self, tvm_rt, device, library: bytes, params: list, where: str, name: str):
        from tvm.runtime.vm import VirtualMachine

        with tempfile.TemporaryDirectory(prefix="llmc-") as tmp:
            lib_path = os.path.join(tmp, f"{name}.so")
            with open(lib_path, "wb") as fh:
                fh.write(library)
            try:
                lib = tvm_rt.load_module(lib_path)
            except Exception as exc:  # TVM's own error types
                raise ArtifactError(f"{where}: the {name} library cannot be loaded ({exc})") from None
        self.vm = VirtualMachine(lib, device)
        self.main = self.vm["main"]
        self.params = params
        self.tvm = tvm_rt
        self.device = device

    def run(self, *arrays) -> list:
        """Call the entry on numpy arrays (copied to the device) or TVM tensors (passed as
        they are: the decode step writes into the KV cache tensors); raw TVM outputs."""
        tensors = [a if isinstance(a, self.tvm.Tensor) else
                   self.tvm.tensor(np.require(a, requirements="C"), self.device) for a in arrays]
        out = self.main(*tensors, *self.params)
        return list(out) if not hasattr(out, "numpy") else [out]

    def __call__(self, *arrays) -> list[np.ndarray]:
        return [o.numpy() for o in self.run(*arrays)]


class LLM:
    """A loaded LLM artifact: ``generate`` on token ids, ``generate_text`` on strings."""

    def __init__(self, manifest: dict, members: dict[str, bytes], where: str,
                 device: str = "cpu") -> None:
        import tvm.runtime

        from .loader import _load_weights
        from .format import WEIGHTS

        if manifest.get("kind") != "llm" or "entry_points" not in manifest:
            raise ArtifactError(f"{where}: not an LLM artifact (compile it with "
                                "`llmc compile-llm`)")
        self.manifest = manifest
        self.where = where
        cfg = manifest["llm"]
        self.config = cfg
        self.num_layers = int(cfg["num_layers"])
        self.kv_heads = int(cfg["num_kv_heads"])
        self.head_dim = int(cfg["head_dim"])
        self.vocab_size = int(cfg["vocab_size"])
        self.max_context = int(cfg["max_context"])
        self.kv_dtype = np.dtype(cfg.get("kv_dtype", "float32"))
        self.eos_token_ids = [int(t) for t in cfg.get("eos_token_ids") or []]
        weights = _load_weights(members.get(WEIGHTS), where)
        self._device = tvm.runtime.device(device, 0)
        dev_w: dict[str, object] = {}
        self._entries = {}
        dec_inputs = [i.get("name") for i in manifest["entry_points"].get("decode", {})
                      .get("inputs", [])]
        if "k_cache_0" not in dec_inputs:
            raise ArtifactError(f"{where}: built by an older llmc (its decode entry takes the "
                                "past rows, not the KV cache): recompile it with "
                                "`llmc compile-llm`")
        for name in ("prefill", "decode"):
            ep = manifest["entry_points"][name]
            lib = members.get(ep["library"])
            if lib is None:
                raise ArtifactError(f"{where}: library {ep['library']!r} is missing")
            params = []
            for p in ep["params"]:
                if p not in weights:
                    raise ArtifactError(f"{where}: weight {p!r} of {name} is missing")
                if p not in dev_w:   # shared weights go to the device once
                    dev_w[p] = tvm.runtime.tensor(np.require(weights[p], requirements="C"), self._device)
                params.append(dev_w[p])
            self._entries[name] = _Entry(tvm.runtime, self._device, lib, params, where, name)
        tok = cfg.get("tokenizer")
        self._tokenizer_json = members.get(tok) if tok else None
        self._tokenizer = None
        self.last_timings: dict[str, float] = {}

    # ----------------------------------------------------------------- tokenizer
    @property
    def tokenizer(self):
        """The ``tokenizers.Tokenizer`` shipped in the artifact (needs the ``tokenizers`` wheel)."""
        if self._tokenizer is None:
            if self._tokenizer_json is None:
                raise InputError(f"{self.where}: this artifact has no tokenizer; pass token ids")
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise InputError("text prompts need the `tokenizers` package (pip install "
                                 "tokenizers); or pass token ids") from None
            self._tokenizer = Tokenizer.from_str(self._tokenizer_json.decode("utf-8"))
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode_tokens(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ----------------------------------------------------------------- steps
    def prefill(self, input_ids: np.ndarray, positions: np.ndarray, mask: np.ndarray):
        """Run the prefill entry: (logits [batch, vocab], [k_0, v_0, k_1, ...] new rows)."""
        out = self._entries["prefill"](input_ids, positions, mask)
        return out[0], out[1:]

    def decode(self, input_ids: np.ndarray, positions: np.ndarray, mask: np.ndarray,
               caches: Sequence):
        """Run one decode step: ``mask`` [batch, 1, 1, past + 1]; ``caches`` the 2 x layers
        KV caches [batch, kv_heads, >= past + 1, head_dim] (k_0, v_0, k_1, ...). The step
        writes its new rows at position ``past`` of the caches when they are TVM tensors (a
        :class:`~llmc.runtime.kv_cache.ContiguousKVCache`'s ``tensors``); numpy arrays are
        copied, so only the returned rows [batch, kv_heads, 1, head_dim] carry the new rows.
        Returns (logits [batch, vocab], rows)."""
        past = int(np.shape(mask)[-1]) - 1
        for c in caches:
            if len(c.shape) != 4 or int(c.shape[2]) <= past:
                raise InputError(f"a KV cache of shape {tuple(c.shape)} has no row {past} for "
                                 f"this step (the mask covers {past + 1} positions)")
        out = self._entries["decode"](input_ids, positions, mask, *caches)
        return out[0], out[1:]

    # ----------------------------------------------------------------- generate
    def generate(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], max_new_tokens: int = 32,
                 *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None, stop_tokens: Iterable[int] | None = None,
                 stream: Callable[[list[int]], object] | None = None,
                 pad_token_id: int | None = None, kv_cache: str = "contiguous",
                 block_size: int = 16) -> list[int] | list[list[int]]:
        """Generate up to ``max_new_tokens`` tokens after each prompt.

        ``temperature == 0`` is greedy (argmax); otherwise softmax sampling at that temperature,
        restricted to the ``top_k`` most likely tokens (0 = all) and the smallest set whose
        probability reaches ``top_p``, drawn from a generator seeded with ``seed``. A row stops
        after producing any of ``stop_tokens`` (default: the model's eos ids; pass ``[]`` to never
        stop), which is included in its output. ``stream`` is called after every step with the
        new token of each row (a row that has stopped gets the pad id, default the first eos).
        One prompt (a list of ints) returns a list of ints; a list of prompts returns a list of
        lists (rows are left-padded internally). ``kv_cache="paged"`` keeps the cache in blocks
        of ``block_size`` tokens allocated as rows fill them (no blocks for left padding)
        instead of one ``max_context`` buffer per row; the tokens are the same.
        """
        single = len(prompt_ids) > 0 and isinstance(prompt_ids[0], (int, np.integer))
        prompts = [list(map(int, prompt_ids))] if single else [list(map(int, p)) for p in prompt_ids]
        if not prompts or any(len(p) == 0 for p in prompts):
            raise InputError("every prompt needs at least one token")
        for p in prompts:
            bad = [t for t in p if not 0 <= t < self.vocab_size]
            if bad:
                raise InputError(f"token ids {bad[:5]} are outside the vocabulary (0..{self.vocab_size - 1})")
        max_new_tokens = int(max_new_tokens)
        if max_new_tokens < 1:
            raise InputError("max_new_tokens must be >= 1")
        B, P = len(prompts), max(len(p) for p in prompts)
        if P + max_new_tokens - 1 > self.max_context:
            raise InputError(f"prompt ({P} tokens) + {max_new_tokens} new tokens exceed the "
                             f"compiled max context {self.max_context}; recompile with a larger "
                             "--max-context or shorten the prompt")
        if kv_cache not in ("contiguous", "paged"):
            raise InputError(f"kv_cache must be 'contiguous' or 'paged', got {kv_cache!r}")
        if int(block_size) < 1:
            raise InputError(f"block_size must be >= 1, got {block_size}")
        stops = set(self.eos_token_ids if stop_tokens is None else map(int, stop_tokens))
        pad = int(pad_token_id if pad_token_id is not None else
                  (self.eos_token_ids[0] if self.eos_token_ids else 0))
        rng = np.random.default_rng(seed)

        # prompt tensors, left padded
        valid = np.zeros((B, self.max_context), bool)
        ids = np.full((B, P), pad, np.int64)
        for r, p in enumerate(prompts):
            ids[r, P - len(p):] = p
            valid[r, P - len(p):P] = True
        positions = np.maximum(np.cumsum(valid[:, :P], axis=1) - 1, 0).astype(np.int64)
        causal = np.tril(np.ones((P, P), bool))
        keep = causal[None] & valid[:, None, :P]
        mask = np.where(keep, np.float32(0), MASK_MIN)[:, None].astype(np.float32)

        t0 = time.perf_counter()
        logits, rows = self.prefill(ids, positions, mask)
        t_prefill = time.perf_counter() - t0
        from .kv_cache import ContiguousKVCache, PagedKVCache

        shape = (2 * self.num_layers, B, self.kv_heads, self.head_dim, self.max_context,
                 self.kv_dtype)
        cache = (PagedKVCache(*shape, block_size=int(block_size)) if kv_cache == "paged"
                 else ContiguousKVCache(*shape, device=self._device))
        step = self._entries["decode"]
        cache.write_prompt(rows, np.array([P - len(p) for p in prompts]))
        past = P
        next_pos = positions[:, -1] + 1
        out: list[list[int]] = [[] for _ in range(B)]
        done = np.zeros(B, bool)
        t1 = time.perf_counter()
        steps = 0
        while True:
            tok = self._pick(logits, temperature, top_k, top_p, rng)
            tok = np.where(done, pad, tok)
            for r in range(B):
                if not done[r]:
                    out[r].append(int(tok[r]))
                    if int(tok[r]) in stops:
                        done[r] = True
            if stream is not None:
                stream([int(t) for t in tok])
            if done.all() or steps + 1 >= max_new_tokens:
                break
            valid[:, past] = True
            dmask = np.where(valid[:, None, None, :past + 1], np.float32(0),
                             MASK_MIN).astype(np.float32)
            res = step.run(tok.astype(np.int64)[:, None], next_pos[:, None], dmask,
                           *cache.step_inputs(past))
            logits = res[0].numpy()
            if cache.needs_rows:   # a cache the step does not write itself (paged)
                cache.append([o.numpy() for o in res[1:]], past)
            past += 1
            next_pos = next_pos + 1
            steps += 1
        t_decode = time.perf_counter() - t1
        self.last_timings = {"prefill_s": t_prefill, "decode_s": t_decode, "decode_steps": steps,
                             "prompt_tokens": P, "batch": B, "kv_cache_bytes": cache.nbytes}
        self.last_cache = cache
        return out[0] if single else out

    @staticmethod
    def _pick(logits: np.ndarray, temperature: float, top_k: int, top_p: float,
              rng: np.random.Generator) -> np.ndarray:
        """Greedy or sampled next token per row (see :meth:`generate`)."""
        if temperature is None or temperature <= 0:
            return np.argmax(logits, axis=-1)
        z = logits.astype(np.float64) / float(temperature)
        if top_k and top_k < z.shape[-1]:
            kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
            z = np.where(z < kth, -np.inf, z)
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        if top_p < 1.0:
            order = np.argsort(-p, axis=-1, kind="stable")
            sp = np.take_along_axis(p, order, axis=-1)
            cum = np.cumsum(sp, axis=-1)
            drop_sorted = (cum - sp) >= top_p           # keep the smallest prefix reaching top_p
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=-1)
            p = np.where(drop, 0.0, p)
            p /= p.sum(axis=-1, keepdims=True)
        return np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)

    def generate_text(self, prompt: str, max_new_tokens: int = 32,
                      stream: Callable[[str], object] | None = None, **kwargs) -> str:
        """Tokenize ``prompt`` with the shipped tokenizer, generate, and return the new text."""
        ids = self.encode(prompt)
        emitted = ""
        got: list[int] = []

        def on_step(tokens: list[int]) -> None:
            nonlocal emitted
            got.append(tokens[0])
            text = self.decode_tokens(got)
            if stream is not None and len(text) > len(emitted):
                stream(text[len(emitted):])
            emitted = text

        new = self.generate(ids, max_new_tokens, stream=on_step, **kwargs)
        return self.decode_tokens(new)


def load_llm(path: str | os.PathLike, device: str | None = None) -> LLM:
    """Open a ``.llmc`` LLM artifact (hashes, version and target checked like ``llmc.load``)."""
    from .format import read_artifact
    from .loader import check_target, check_version

    where = os.fspath(path)
    manifest, members = read_artifact(where, where)
    check_version(manifest, where)
    target = manifest.get("target")
    if not isinstance(target, dict):
        raise ArtifactError(f"{where}: manifest has no target")
    check_target(target, where)
    return LLM(manifest, members, where, device or target.get("device", "cpu"))

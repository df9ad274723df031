"""The ``compile-llm`` and ``generate`` CLI subcommands (wired into :mod:`llmc.cli`).

Kept apart from cli.py so the LLM flags live next to the LLM code; ``cli.build_parser`` calls
:func:`add_subcommands` with its subparsers object.
"""
from __future__ import annotations

import argparse
import sys

from .errors import InputError


def cmd_compile_llm(args: argparse.Namespace) -> int:
    """Import a Hugging Face checkpoint (directory or .gguf) and write an LLM artifact."""
    import os

    from .llm import LLMCompileOptions, compile_llm_to_file

    out = args.output or (os.path.splitext(os.path.basename(args.model.rstrip("/")))[0] + ".llmc")
    options = LLMCompileOptions(target=args.target, mcpu=args.mcpu, arch=args.arch,
                                opt_level=args.opt_level,
                                max_context=args.max_context, kv_dtype=args.kv_dtype,
                                weights=args.weights, group_size=args.group_size)
    progress = (lambda m: None) if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr,
                                                                    flush=True))
    manifest = compile_llm_to_file(args.model, out, options, progress)
    cfg = manifest["llm"]
    print(f"wrote {out}: {cfg['model_type']} {cfg['num_layers']} layers, max context "
          f"{cfg['max_context']}, KV cache {cfg['kv_dtype']}, tokenizer "
          f"{'yes' if cfg['tokenizer'] else 'no'} ({manifest['compile_seconds']:.1f} s)")
    return 0


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise InputError(f"--prompt-ids takes comma-separated integers, got {text!r}") from None
    if not ids:
        raise InputError("--prompt-ids is empty")
    return ids


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate from a prompt (text through the shipped tokenizer, or token ids)."""
    from llmc.runtime.llm import load_llm

    if (args.prompt is None) == (args.prompt_ids is None):
        raise InputError("pass exactly one of --prompt TEXT or --prompt-ids 1,2,3")
    llm = load_llm(args.artifact)
    stop = None if args.stop_ids is None else _parse_ids(args.stop_ids) if args.stop_ids else []
    kw = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
              stop_tokens=stop, kv_cache=args.kv_cache, block_size=args.block_size)
    if args.prompt is not None:
        def show(piece: str) -> None:
            print(piece, end="", flush=True)
        llm.generate_text(args.prompt, args.max_new_tokens, stream=show, **kw)
        print()
    else:
        new = llm.generate(_parse_ids(args.prompt_ids), args.max_new_tokens, **kw)
        print(",".join(str(t) for t in new))
    t = llm.last_timings
    if args.timings and t:
        steps = max(int(t["decode_steps"]), 1)
        print(f"prefill {t['prompt_tokens']} tokens: {t['prefill_s'] * 1e3:.1f} ms; decode "
              f"{steps / max(t['decode_s'], 1e-9):.1f} tokens/s", file=sys.stderr)
    return 0


def add_subcommands(sub) -> None:
    """Register ``compile-llm`` and ``generate`` on the CLI's subparsers object."""
    c = sub.add_parser("compile-llm", help="compile a Hugging Face decoder-only LLM (directory "
                       "with config.json + safetensors, or a .gguf file) into a .llmc artifact")
    c.add_argument("model", help="model directory or .gguf file")
    c.add_argument("--target", default="x86", choices=["x86", "cuda"],
                   help="x86 (default) or cuda (float32 weights)")
    c.add_argument("--arch", default=None, help="CUDA GPU (sm_80..sm_90; default: this "
                   "machine's GPU, else sm_80)")
    c.add_argument("--mcpu", default=None, help="x86 CPU to build for (default: this machine's)")
    c.add_argument("-o", "--output", help="artifact path (default: NAME.llmc)")
    c.add_argument("-O", dest="opt_level", default="O3", choices=["O0", "O1", "O2", "O3"],
                   help="optimization level (default O3)")
    c.add_argument("--max-context", type=int, default=None,
                   help="longest prompt + generation (default: min(model max, 2048))")
    c.add_argument("--kv-dtype", default="float32", choices=["float32", "float16", "int8"],
                   help="KV-cache precision (default float32; int8: one scale per token and "
                        "head)")
    c.add_argument("--weights", default="float32", choices=["float32", "int8", "int4"],
                   help="linear-layer weight precision: float32 (default), int8 (weight-only, "
                        "symmetric per output channel, or per group with --group-size) or int4 "
                        "(group-wise weight-only, asymmetric)")
    c.add_argument("--group-size", type=int, default=None, choices=[32, 64, 128],
                   help="weight group size along K (smaller per layer if K needs it): int4 "
                        "default 128; int8 default per output channel, a size makes it "
                        "group-wise (one scale per group and channel)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    c.set_defaults(func=cmd_compile_llm)

    g = sub.add_parser("generate", help="generate text or token ids with a compiled LLM")
    g.add_argument("artifact")
    g.add_argument("--prompt", help="prompt text (uses the tokenizer in the artifact)")
    g.add_argument("--prompt-ids", help="prompt token ids, comma-separated")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop-ids", default=None,
                   help="comma-separated stop token ids (default: the model's eos; '' = none)")
    g.add_argument("--kv-cache", default="contiguous", choices=["contiguous", "paged"],
                   help="KV cache: one max-context buffer per row (default) or paged blocks")
    g.add_argument("--block-size", type=int, default=16, help="tokens per paged-cache block")
    g.add_argument("--timings", action="store_true", help="print prefill latency and decode speed")
    g.set_defaults(func=cmd_generate)


def main_for_tests(argv: list[str]) -> int:
    """Run these subcommands through a parser of their own (and the CLI's error handling).

    Tests use it so they do not depend on how cli.py registers the subcommands.
    """
    from .errors import LlmcError

    p = argparse.ArgumentParser(prog="llmc")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except LlmcError as exc:
        print(f"llmc: error: {exc}", file=sys.stderr)
        return 1

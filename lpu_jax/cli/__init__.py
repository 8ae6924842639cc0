"""The `lpu-jax` command line. Printing and argument parsing live in this package alone; the library raises errors.

The jobs (demo, fma, gemm, embed) are here; the golden-model tools register their own subcommands:
`files` (asm, disasm, run), `diff` (diff), `export` (trace-to-vcd, trace-to-perfetto).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


DEMO_SENTENCES = (
    "A golden model must be exact.",
    "The cat sat on the mat.",
    "Streams move one hop per cycle.",
    "I like green tea in the morning.",
)


def _demo(args) -> int:
    """The main job: MiniLM sentence embeddings on the simulated chip, checked against the flax model."""
    if not 1 <= args.sentences <= len(DEMO_SENTENCES):
        raise ValueError(f"--sentences must be in 1..{len(DEMO_SENTENCES)}, got {args.sentences}")
    res = _embed_and_check(
        args.policy, args.seq_len, DEMO_SENTENCES[: args.sentences], args.layers, True, "lpu-jax demo"
    )
    cos = res["cosine_vs_fp32_reference"]
    bound = 0.9999 if args.policy == "fp16" else 0.99
    ok = min(cos) >= bound and not any(res["hazards"])
    print(
        f"  agreement    min cosine {min(cos):.6f} with the flax fp32 model (bound {bound}): {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


def _fma(args) -> int:
    from ..config import groqchip1
    from ..programs import read_output, relu_fma
    from ..sim import is_idle, run
    from ..state import hazard_report, init_state, mem_image

    cfg = groqchip1()
    rng = np.random.default_rng(args.seed)
    n = args.vectors
    a, b, c = (rng.standard_normal((n, cfg.n_lanes)).astype(np.float32) for _ in range(3))
    built = relu_fma(cfg, a, b, c)
    t0 = time.perf_counter()
    state, _ = run(cfg, built.program, init_state(cfg, built.mem), built.done)
    state.cycle.block_until_ready()
    wall = time.perf_counter() - t0
    y = read_output(cfg, mem_image(cfg, state), built.outputs["y"])
    ref = np.maximum(a * b + c, np.float32(0))
    ok = np.array_equal(y.view(np.uint32), np.where(ref > 0, ref, np.float32(0)).view(np.uint32))
    idle = is_idle(state, _encoded(cfg, built.program))
    cycles = built.done
    lat_us = cfg.latency_s(cycles) * 1e6
    print(f"lpu-jax fma: relu(a * b + c) on {n} x {cfg.n_lanes} fp32 vectors, {cfg.name}")
    print(f"  program      {built.program.n_instructions} instructions on {len(built.program.queues)} queues")
    print(f"  cycles       {cycles} (program finished: {idle})")
    print(f"  latency      {lat_us:.3f} us at {cfg.clock_hz / 1e6:.0f} MHz (incl. {cfg.stagger_cycles}-cycle stagger)")
    print(f"  hazards      {int(np.asarray(state.hazards.count).sum())}")
    for line in hazard_report(cfg, state):
        print(f"               {line}")
    print(f"  vs numpy     {'bit-exact' if ok else 'MISMATCH'} ({y.size} fp32 values)")
    print(f"  wall time    {wall:.2f} s (including compilation)")
    return 0 if ok and idle else 1


def _gemm(args) -> int:
    from .. import config
    from ..kernels import gemm, run_kernel
    from ..state import hazard_report

    cfg = getattr(config, args.config)()
    t0 = time.perf_counter()
    k = gemm(cfg, args.M, args.K, args.N, args.dtype)
    gen = time.perf_counter() - t0
    print(f"lpu-jax gemm: [{args.M} x {args.K}] x [{args.K} x {args.N}] {args.dtype} on {cfg.name}")
    print(f"  program      {k.program.n_instructions} instructions on {len(k.program.queues)} queues ({gen:.1f} s)")
    print(f"  cycles       {k.cycles}")
    print(f"  latency      {cfg.latency_s(k.cycles) * 1e6:.2f} us at {cfg.clock_hz / 1e6:.0f} MHz")
    print(f"  MXM use      {k.utilisation:.1%} of peak ({k.macs} useful MACs)")
    if args.no_run:
        return 0
    rng = np.random.default_rng(args.seed)
    if args.dtype == "i8":
        a = rng.integers(-128, 128, (args.M, args.K), dtype=np.int8)
        b = rng.integers(-128, 128, (args.K, args.N), dtype=np.int8)
    else:
        a = rng.standard_normal((args.M, args.K)).astype(np.float16)
        b = rng.standard_normal((args.K, args.N)).astype(np.float16)
    t0 = time.perf_counter()
    out, state = run_kernel(k, {"a": a, "b": b})
    wall = time.perf_counter() - t0
    ref = a.astype(np.float64) @ b.astype(np.float64)  # exact for int8 (sums < 2^53)
    if args.dtype == "i8":
        ok, what = bool((out["c"] == ref).all()), "bit-exact"
    else:
        # docs/kernels.md: |C - C_exact| <= gamma(Kt) sum|a||b|, plus the float64 reference's own error
        kt, u = -(-args.K // (cfg.n_lanes // 2)), 2.0**-24
        mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
        bound = (kt * u / (1 - kt * u) + args.K * 2.0**-53) * mag
        ok = bool((np.abs(out["c"] - ref) <= bound).all())
        rel = float(np.max(np.abs(out["c"] - ref) / np.maximum(mag, 1e-300)))
        what = f"within the fp16 bound (max error {rel:.1e} x sum|a||b|)"
    hz = hazard_report(cfg, state)
    print(f"  hazards      {len(hz)}" + "".join(f"\n               {h}" for h in hz))
    print(f"  vs numpy     {what if ok else 'MISMATCH'}")
    print(f"  wall time    {wall:.1f} s (simulating every cycle, compilation included)")
    return 0 if ok and not hz else 1


def _embed_and_check(policy: str, seq_len: int, sentences, layers, check: bool, title: str):
    """Compile MiniLM, embed the sentences on the chip, print the report and the agreement; returns a dict."""
    from ..embed import ChipEmbedder
    from ..reference import minilm

    minilm.encode(list(sentences), seq_len)  # a sentence too long for seq_len: the error before compiling
    t0 = time.perf_counter()
    emb = ChipEmbedder(policy, seq_len, layers=layers)
    compile_s = time.perf_counter() - t0
    rep = emb.report()
    model = "all-MiniLM-L6-v2" + (f" (first {layers} layers)" if layers else "")
    print(f"{title}: {model}, {policy} policy, sequence length {seq_len}, on the simulated {emb.cfg.name}")
    print(f"  compiled     {rep.instructions:,} instructions in {compile_s:.1f} s")
    print("  " + str(rep).replace("\n", "\n  "))
    vecs, runs = emb.embed(sentences)
    ref = emb.reference(sentences) if check else None
    result = {
        "model": model,
        "policy": policy,
        "seq_len": seq_len,
        "config": emb.cfg.name,
        "sentences": list(sentences),
        "embeddings": vecs.tolist(),
        "report": rep.as_dict(),
        "compile_seconds": compile_s,
        "sim_seconds": [r.wall_seconds for r in runs],
        "hazards": [r.hazards for r in runs],
    }
    if check:
        result["cosine_vs_fp32_reference"] = [float(np.dot(v, r)) for v, r in zip(vecs, ref)]
    for i, (s, v, r) in enumerate(zip(sentences, vecs, runs)):
        head = ", ".join(f"{x:+.4f}" for x in v[:6])
        agree = f"; cosine vs flax fp32 {result['cosine_vs_fp32_reference'][i]:.6f}" if check else ""
        print(f"  [{i}] {s!r} ({r.tokens} tokens): [{head}, ...] ({v.size} values){agree}")
        print(f"      simulated {rep.cycles:,} cycles in {r.wall_seconds:.1f} s wall time, {r.hazards} hazards")
    return result


def _embed(args) -> int:
    import json

    res = _embed_and_check(args.policy, args.seq_len, args.sentences, args.layers, not args.no_check, "lpu-jax embed")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
        print(f"  wrote        {args.json}")
    return 0 if not any(res["hazards"]) else 1


def _encoded(cfg, program):
    from ..isa import encode

    return encode(cfg, program)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lpu-jax", description="A cycle-level JAX golden model of Groq's LPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo", help="MiniLM sentence embeddings on the simulated groqchip1, checked against the flax model"
    )
    d.add_argument("--sentences", type=int, default=2, help=f"how many demo sentences (1..{len(DEMO_SENTENCES)})")
    d.add_argument("--policy", choices=["fp16", "int8"], default="fp16", help="numeric policy (default fp16)")
    d.add_argument("--seq-len", type=int, default=16, help="compiled sequence length in tokens (default 16)")
    d.add_argument("--layers", type=int, default=None, help="run only the first N of the 6 layers (quicker)")
    d.set_defaults(func=_demo)
    p = sub.add_parser("fma", help="run relu(a*b+c) on the simulated groqchip1's VXM and check it against numpy")
    p.add_argument("--vectors", type=int, default=8, help="number of 320-element fp32 vectors (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the inputs")
    p.set_defaults(func=_fma)
    g = sub.add_parser("gemm", help="generate a GEMM program, report its cycles and MXM use, run it and check it")
    for d in "MKN":
        g.add_argument(d, type=int, help=f"{d} of [M x K] x [K x N]")
    g.add_argument("--dtype", choices=["i8", "f16"], default="i8")
    g.add_argument("--config", choices=["groqchip1", "tiny"], default="groqchip1")
    g.add_argument("--seed", type=int, default=0, help="random seed for the inputs")
    g.add_argument("--no-run", action="store_true", help="only generate and report the schedule")
    g.set_defaults(func=_gemm)
    e = sub.add_parser("embed", help="all-MiniLM-L6-v2 sentence embeddings computed on the simulated groqchip1")
    e.add_argument("sentences", nargs="+", help="the sentences to embed")
    e.add_argument("--policy", choices=["fp16", "int8"], default="fp16", help="numeric policy (default fp16)")
    e.add_argument("--seq-len", type=int, default=16, help="compiled sequence length in tokens (default 16)")
    e.add_argument("--layers", type=int, default=None, help="run only the first N of the 6 layers (quicker)")
    e.add_argument("--json", type=Path, help="write the embeddings and the report as JSON to this path")
    e.add_argument("--no-check", action="store_true", help="skip the comparison with the flax fp32 model")
    e.set_defaults(func=_embed)
    from . import diff, export, files

    for tool in (files, diff, export):
        tool.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, NotImplementedError) as e:  # library errors: one clear line, non-zero exit
        print(f"lpu-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

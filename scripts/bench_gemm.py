"""GEMM kernels on groqchip1: scheduled cycles, MXM utilisation, and the simulator's wall time to run them.

    python scripts/bench_gemm.py [--shapes 1024x1024x1024 2304x4096x1376 ...] [--dtype i8] [--no-check]
                                 [--json out.json]

For each shape MxKxN: the generator's time, the schedule's cycles and MXM utilisation (useful MACs / (peak MACs
x cycles)), the latency at the configured clock (stagger included), then the simulator's wall time to run every
cycle (after a warm-up run on a scratch state that compiles the scans; its time, compile included, is compile_s),
and whether the result is bit-exact against numpy (int8) or within the documented bound (fp16). Prints a table
and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import jax
import numpy as np

import lpu_jax as L
from lpu_jax import isa
from lpu_jax.kernels import gemm

DEFAULT_SHAPES = ["320x320x320", "1024x1024x1024", "2304x4096x1376", "4096x4096x4096"]


def _shape(s: str) -> tuple[int, int, int]:
    try:
        m, k, n = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 1024x1024x1024, got {s!r}") from None
    return m, k, n


def bench(cfg: L.ChipConfig, shape, dtype: str, check: bool, seed: int = 0, units: str = "auto") -> dict:
    M, K, N = shape
    t0 = time.perf_counter()
    k = gemm(cfg, M, K, N, dtype)
    gen_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    if dtype == "i8":
        a = rng.integers(-128, 128, (M, K), dtype=np.int8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    else:
        a = rng.standard_normal((M, K)).astype(np.float16)
        b = rng.standard_normal((K, N)).astype(np.float16)
    prog = isa.encode(cfg, k.program)
    chunk = 256
    # warm-up on a scratch state: compiles the two scan lengths (chunk and 1) that the timed run uses
    t0 = time.perf_counter()
    warm, _ = L.run(cfg, prog, L.init_state(cfg), min(chunk + 1, k.cycles), chunk=chunk, donate=True, units=units)
    warm.cycle.block_until_ready()
    compile_s = time.perf_counter() - t0
    del warm
    state = L.init_state(cfg, k.mem_image({"a": a, "b": b}))
    t0 = time.perf_counter()
    state, _ = L.run(cfg, prog, state, k.cycles, chunk=chunk, donate=True, units=units)
    state.cycle.block_until_ready()
    run_s = time.perf_counter() - t0
    c = k.layouts["c"].read(cfg, L.mem_image(cfg, state))
    ok = None
    if check:
        if dtype == "i8":
            # float64 BLAS is exact here: every partial sum is an integer below 128 * 128 * K < 2^53
            ok = bool((c == (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)).all())
        else:
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            kt = math.ceil(K / (cfg.n_lanes // 2))
            u = 2.0**-24
            bound = (kt * u / (1 - kt * u) + K * 2.0**-53) * (np.abs(a64) @ np.abs(b64))
            ok = bool((np.abs(c - a64 @ b64) <= bound).all())
    return {
        "shape": f"{M}x{K}x{N}",
        "dtype": dtype,
        "cycles": k.cycles,
        "utilisation": k.utilisation,
        "latency_us": cfg.latency_s(k.cycles) * 1e6,
        "instructions": k.program.n_instructions,
        "generate_s": gen_s,
        "compile_s": compile_s,
        "sim_s": run_s,
        "sim_cycles_per_s": k.cycles / run_s,
        "hazards": len(L.hazard_report(cfg, state)),
        "correct": ok,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", type=_shape, default=[_shape(s) for s in DEFAULT_SHAPES])
    ap.add_argument("--dtype", choices=["i8", "f16"], default="i8")
    ap.add_argument("--config", choices=["tiny", "groqchip1"], default="groqchip1")
    ap.add_argument("--no-check", action="store_true", help="skip the numpy check of the result")
    ap.add_argument("--json", help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    cfg = getattr(L, args.config)()
    rows = []
    head = (
        f"{'shape':<16} {'dtype':>5} {'cycles':>8} {'util':>6} {'latency us':>10} {'gen s':>6} {'compile s':>9} "
        f"{'sim s':>7} {'cycles/s':>8} {'haz':>3} {'ok':>5}"
    )
    print(head)
    for shape in args.shapes:
        r = bench(cfg, shape, args.dtype, not args.no_check)
        rows.append(r)
        print(
            f"{r['shape']:<16} {r['dtype']:>5} {r['cycles']:>8} {r['utilisation']:>6.1%} {r['latency_us']:>10.1f} "
            f"{r['generate_s']:>6.1f} {r['compile_s']:>9.1f} {r['sim_s']:>7.1f} {r['sim_cycles_per_s']:>8.0f} "
            f"{r['hazards']:>3} {str(r['correct']):>5}",
            flush=True,
        )
    meta = {
        "benchmark": "bench_gemm",
        "config": cfg.name,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Simulated cycles per second on a program that keeps every MEM slice and every VXM ALU busy every cycle.

    python scripts/bench_sim.py [--configs tiny groqchip1] [--cycles 2048] [--json out.json]

For each config: compile time (the first scan of `chunk` cycles, compile included), then the steady rate over
`--cycles` cycles (run twice; the faster run is reported). Prints a table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np

import lpu_jax as L
from lpu_jax import programs


def bench(cfg: L.ChipConfig, cycles: int, chunk: int) -> dict:
    prog = programs.mem_vxm_load(cfg, cycles + chunk)
    arr = L.encode(cfg, prog)
    state = L.init_state(cfg)
    t0 = time.perf_counter()
    state, _ = L.run(cfg, arr, state, chunk, chunk=chunk, donate=True)
    state.cycle.block_until_ready()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(2):
        s = L.init_state(cfg)
        t0 = time.perf_counter()
        s, _ = L.run(cfg, arr, s, cycles, chunk=chunk, donate=True)
        s.cycle.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    h = np.asarray(s.hazards.count)
    active = int(np.count_nonzero(arr[:, 0, 0]))
    return {
        "config": cfg.name,
        "mem_slices": cfg.n_mem,
        "vxm_alus": cfg.vxm_alus,
        "busy_queues": active,
        "cycles": cycles,
        "wall_s": best,
        "cycles_per_s": cycles / best,
        "compile_s": compile_s,
        "hazards": int(h.sum()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "groqchip1"], choices=["tiny", "groqchip1"])
    ap.add_argument("--cycles", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--json", help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    if args.cycles % args.chunk:
        ap.error("--cycles must be a multiple of --chunk")
    rows = [bench(getattr(L, name)(), args.cycles, args.chunk) for name in args.configs]
    print(f"{'config':<10} {'MEM':>4} {'ALUs':>4} {'busy queues':>11} {'cycles':>7} {'cycles/s':>10} {'compile s':>9}")
    for r in rows:
        print(
            f"{r['config']:<10} {r['mem_slices']:>4} {r['vxm_alus']:>4} {r['busy_queues']:>11} {r['cycles']:>7} "
            f"{r['cycles_per_s']:>10.0f} {r['compile_s']:>9.1f}"
        )
    meta = {
        "benchmark": "bench_sim",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": __import__("os").cpu_count(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A long trace of a busy groqchip1 program written to disk and diffed, with wall time and peak memory per step.

    python scripts/trace_100k.py [--cycles 100000] [--config groqchip1] [--workdir DIR] [--json out.json]

The program keeps every MEM slice and every VXM ALU busy every cycle (`programs.mem_vxm_load`) on a random SRAM
image (seed 0). Steps, each a fresh `lpu-jax` process (so its peak resident memory is its own):
  1. `lpu-jax run`: the whole run, its trace (issue, land, commit, hazards) streamed to A.lputrace chunk by chunk;
  2. the same from an image with one bit flipped (MEM slice W5, an address read 3/4 into the first pass of the
     reads, lane 203, bit 0) to B.lputrace;
  3. `lpu-jax diff A A`: every event read back, streamed, and compared (equal: exit 0);
  4. `lpu-jax diff A B`: the first divergence (where the flipped word is first read) and the count (exit 1).
Prints a table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import lpu_jax as L
from lpu_jax import formats, programs


def _step(name: str, argv: list[str], expect: int) -> dict:
    """Run `lpu-jax argv` in a child process; wall time, peak RSS (os.wait4), exit code, last lines of output."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "lpu_jax.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != expect:
        raise SystemExit(f"{name}: lpu-jax {' '.join(argv)} exited {p.returncode}, expected {expect}:\n{out}")
    return {"step": name, "wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "exit": p.returncode, "output": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=100_000)
    ap.add_argument("--config", choices=["groqchip1", "small", "tiny"], default="groqchip1")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lpu_trace_100k"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cfg = getattr(L, args.config)()
    d = args.workdir
    d.mkdir(parents=True, exist_ok=True)
    n = args.cycles
    formats.write_program(d / "load.lpuprog", cfg, programs.mem_vxm_load(cfg, n))
    image = np.random.default_rng(0).integers(0, 256, (cfg.n_mem, cfg.mem_words, cfg.n_lanes), dtype=np.uint8)
    formats.write_mem(d / "a.lpumem", cfg, image)
    # the last address the reads of the first pass reach (they cycle through min(mem_words, n) addresses)
    m, addr, lane = cfg.mem_names.index("W5"), min(cfg.mem_words, n) * 3 // 4, min(203, cfg.n_lanes - 1)
    image[m, addr, lane] ^= 1
    formats.write_mem(d / "b.lpumem", cfg, image)
    del image
    run = ["run", str(d / "load.lpuprog"), "--cycles", str(n), "--quiet"]
    steps = [
        _step("run A (trace)", [*run, "--mem", str(d / "a.lpumem"), "--trace", str(d / "A.lputrace")], 0),
        _step(
            "run B (trace, one bit flipped)", [*run, "--mem", str(d / "b.lpumem"), "--trace", str(d / "B.lputrace")], 0
        ),
        _step("diff A A", ["diff", str(d / "A.lputrace"), str(d / "A.lputrace"), "--limit", "3"], 0),
        _step("diff A B", ["diff", str(d / "A.lputrace"), str(d / "B.lputrace"), "--limit", "3"], 1),
    ]
    size = {k: (d / f"{k}.lputrace").stat().st_size for k in "AB"}
    _, header, _ = formats.iter_trace(d / "A.lputrace")
    mb = size["A"] / 1e6
    print(f"{n:,} cycles of mem_vxm_load on {cfg.name}; trace A: {mb:,.0f} MB, events {header['end']['counts']}")
    print(f"{'step':34s} {'wall s':>8s} {'peak RSS MB':>12s} exit")
    for s in steps:
        print(f"{s['step']:34s} {s['wall_s']:8.1f} {s['peak_rss_mb']:12.0f} {s['exit']:4d}")
    print("\n" + steps[3]["output"].strip())
    if args.json:
        res = {
            "config": cfg.name,
            "cycles": n,
            "trace_bytes": size,
            "events": header["end"]["counts"],
            "flip": {"slice": "W5", "address": addr, "lane": lane, "bit": 0},
            "steps": steps,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"),
        }
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

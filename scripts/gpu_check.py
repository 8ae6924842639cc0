"""Same bits on CPU and GPU: run the same programs on both backends in one process and compare every bit.

    python scripts/gpu_check.py [--json out.json] [--configs tiny groqchip1]

Programs: (1) every VXM op on every element type it takes, on random bytes streamed out of MEM (NaN payloads,
subnormals, extremes all occur); (2) the MEM+VXM benchmark load; (3) GEMM kernels on the MXM, int8 and fp16 (the
fp16 inputs include subnormals, infinities and NaNs); (4) the transpose kernel (SXM Rotate and Permute, MEM
Gather). For each config and program it compares the
final machine state leaf by leaf and the per-cycle trace of every result landing on a stream, between the CPU
and the default (GPU) backend, and times the benchmark load on both. Prints a table; writes JSON with --json.
Exits 1 if any bit differs.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import lpu_jax as L
from lpu_jax import isa, programs
from lpu_jax.dtypes import DTYPES
from lpu_jax.isa import E, Instruction, W
from lpu_jax.kernels import gemm, transpose


def op_sweep(cfg: L.ChipConfig) -> tuple[L.Program, np.ndarray, int]:
    """Every (VXM op, dtype) pair, spread over the ALUs, on random streamed bytes; returns (program, mem, cycles)."""
    rng = np.random.default_rng(0)
    mem = rng.integers(0, 256, (cfg.n_mem, cfg.mem_words, cfg.n_lanes), dtype=np.uint8)
    S, A, h = cfg.n_streams, cfg.vxm_alus, cfg.mem_per_hemisphere
    combos = []
    for name, (_, _, types) in isa.VXM_OPS.items():
        for t in types:
            if name == "convert":
                combos += [f"convert.{t}.{u.name}" for u in DTYPES]
            else:
                combos.append(f"{name}.{t}")
    n = -(-len(combos) // A)
    q: dict[str, list] = {}
    # West slices stream random rows east on every stream, every cycle, for the whole run.
    for j in range(h):
        q[f"MEM.W{j}"] = [Instruction("Read", (0, E(j % S))), Instruction("Repeat", (n + 8, 1, 1))]
    for a in range(A):
        body = []
        for k in range(n):
            i = a + k * A
            if i >= len(combos):
                break
            m = combos[i]
            n_src = len(isa.vxm_widths(*isa.vxm_parts(m))) - 1
            body.append(Instruction(m, (W((4 * a) % S), *[E((4 * (s + 1)) % S) for s in range(n_src)])))
        q[f"VXM.{a}"] = [Instruction("NOP", (h + 4,))] + body
    return L.Program(q), mem, h + 4 + n + 12


def kernel_cases(cfg: L.ChipConfig) -> dict:
    """GEMMs (int8, fp16 with special values) and a transpose, as (program, mem, cycles)."""
    rng = np.random.default_rng(1)
    L_ = cfg.n_lanes
    M, K, N = (40, 70, 50) if L_ < 320 else (64, 700, 330)
    a8 = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b8 = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bits = rng.integers(0, 2**16, (M, K), dtype=np.uint16)  # every fp16 pattern class: subnormals, inf, NaN
    a16 = np.where(rng.random((M, K)) < 0.9, rng.standard_normal((M, K)).astype(np.float16), bits.view(np.float16))
    b16 = rng.standard_normal((K, N)).astype(np.float16)
    x = rng.integers(-128, 128, (L_ + 8, L_ // 2 + 3), dtype=np.int8)
    out = {}
    for label, k, vals in (
        ("gemm int8", gemm(cfg, M, K, N, "i8"), {"a": a8, "b": b8}),
        ("gemm fp16", gemm(cfg, M, K, N, "f16"), {"a": a16, "b": b16}),
        ("transpose", transpose(cfg, *x.shape), {"x": x}),
    ):
        out[label] = (k.program, k.mem_image(vals), k.cycles)
    return out


def run_on(device, cfg, prog, mem, n, trace=("landed_data", "landed_sid")):
    with jax.default_device(device):
        state = L.init_state(cfg, mem)
        t0 = time.perf_counter()
        state, tr = L.run(cfg, prog, state, n, trace=trace)
        jax.block_until_ready(state)
        return state, tr, time.perf_counter() - t0


def compare(a, b) -> list[str]:
    bad = []
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            bad.append(jax.tree_util.keystr(path))
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "groqchip1"])
    ap.add_argument("--bench-cycles", type=int, default=2048)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cpu = jax.devices("cpu")[0]
    acc = jax.devices()[0]
    rows = []
    ok = True
    for name in args.configs:
        cfg = getattr(L, name)()
        for label, (prog, mem, n) in {
            "vxm op sweep": op_sweep(cfg),
            "mem+vxm load": (
                programs.mem_vxm_load(cfg, 400),
                np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8),
                300,
            ),
            **kernel_cases(cfg),
        }.items():
            s1, t1, _ = run_on(cpu, cfg, prog, mem, n)
            s2, t2, _ = run_on(acc, cfg, prog, mem, n)
            bad = compare(s1, s2) + [f"trace[{k}]" for k in t1 if t1[k].tobytes() != t2[k].tobytes()]
            ok &= not bad
            rows.append({"config": name, "program": label, "cycles": n, "identical": not bad, "differs": bad})
        # speed on both backends (compile excluded: second run)
        load = programs.mem_vxm_load(cfg, args.bench_cycles + 256)
        zeros = np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)
        for dev, dname in ((cpu, "cpu"), (acc, acc.platform)):
            run_on(dev, cfg, load, zeros, 256, trace=())
            _, _, dt = run_on(dev, cfg, load, zeros, args.bench_cycles, trace=())
            rows.append(
                {
                    "config": name,
                    "program": "speed",
                    "device": dname,
                    "cycles": args.bench_cycles,
                    "cycles_per_s": args.bench_cycles / dt,
                }
            )
    for r in rows:
        if r["program"] == "speed":
            print(f"{r['config']:<10} speed on {r['device']:<5} {r['cycles_per_s']:>10.0f} cycles/s")
        else:
            print(
                f"{r['config']:<10} {r['program']:<14} {r['cycles']:>5} cycles  "
                f"same bits: {r['identical']} {r['differs']}"
            )
    meta = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "cpu": str(cpu)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

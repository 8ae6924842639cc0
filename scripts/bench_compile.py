"""The compiler's own speed: compile a fixed set of functions and time each phase, with hashes of the results.

    python scripts/bench_compile.py [--big] [--only NAME ...] [--repeat N] [--json out.json] [--compare base.json]

Cases: the functions tests/test_compiler.py compiles (LayerNorm, int8 FFN block, softmax, fp16 FFN, row sum) on
`small()`, and an int8 FFN block (384 -> 1536 -> 384, + residual + LayerNorm) on `groqchip1()` at T=32 (and at
T=128 with --big). Per case it prints the instructions, the schedule's cycles and the compile time, in CPU
seconds of this process (steadier than wall time on a shared machine; the wall time is in the JSON), split into
lower+place (tracing, lowering and the builder), check (`check_schedule`) and emit (`Schedule.emit` and
`isa.validate`), plus a SHA-256 of the result: the encoded program (`Compiled.encoded()`), every tensor's layout
(slice and address arrays) and `Schedule.links`. Two versions of the compiler made the same choices iff their
hashes match; --compare checks that against a JSON written by an earlier run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpu_jax as L
import lpu_jax.compiler as C
from lpu_jax import isa
from lpu_jax.compiler.schedule import Schedule

# the functions tests/test_compiler.py compiles, taken from it (one definition, timed here and tested there)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_compiler import D, ffn_fp16, ffn_int8, int8_params, layer_norm, softmax  # noqa: E402


def _layer_norm_case():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, D)) * 3 + 1).astype(np.float32)
    p = {"g": rng.standard_normal(D).astype(np.float32), "b": rng.standard_normal(D).astype(np.float32)}
    return (lambda p, x: layer_norm(x, p["g"], p["b"])), p, (x,), L.small()


def _ffn_int8_case():
    rng = np.random.default_rng(2)
    p = int8_params(rng, f=120)
    return ffn_int8, p, (rng.standard_normal((4, D)).astype(np.float32),), L.small()


def _softmax_case():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 24)) * 4 - 30).astype(np.float32)
    return (lambda p, x: softmax(x)), {}, (x,), L.small()


def _ffn_fp16_case():
    rng = np.random.default_rng(4)
    f = 56
    p = {
        "w1": (rng.standard_normal((D, f)) / np.sqrt(D)).astype(np.float16),
        "b1": rng.standard_normal(f).astype(np.float32),
        "w2": (rng.standard_normal((f, D)) / np.sqrt(f)).astype(np.float16),
        "b2": rng.standard_normal(D).astype(np.float32),
    }
    return ffn_fp16, p, (rng.standard_normal((5, D)).astype(np.float32),), L.small()


def _row_sum_case():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, D)).astype(np.float32)
    return (lambda p, x: jnp.sum(x, axis=0) * (1.0 / 5)), {}, (x,), L.small()


def _chip_ffn_case(T):
    def make():
        rng = np.random.default_rng(10)
        p = int8_params(rng, d=384, f=1536)
        return ffn_int8, p, (rng.standard_normal((T, 384)).astype(np.float32),), L.groqchip1()

    return make


CASES = {
    "layer_norm": _layer_norm_case,
    "ffn_int8": _ffn_int8_case,
    "softmax": _softmax_case,
    "ffn_fp16": _ffn_fp16_case,
    "row_sum": _row_sum_case,
    "chip_ffn_T32": _chip_ffn_case(32),
}
BIG = {"chip_ffn_T128": _chip_ffn_case(128)}


# --------------------------------------------------------------------------- timing and hashing
class _Timed:
    """CPU seconds spent in `check_schedule`, `Schedule.emit` and `isa.validate` during one `compile_fn`: wrappers
    installed where compile_fn looks these up, removed on exit."""

    def __enter__(self):
        self.check = self.emit = 0.0
        self._saved = (C.check_schedule, Schedule.emit, isa.validate)
        check, emit, validate = self._saved

        def timed(f, field):
            def g(*a, **k):
                t = time.process_time()
                try:
                    return f(*a, **k)
                finally:
                    setattr(self, field, getattr(self, field) + time.process_time() - t)

            return g

        C.check_schedule = timed(check, "check")
        Schedule.emit = timed(emit, "emit")
        isa.validate = timed(validate, "emit")
        return self

    def __exit__(self, *exc):
        C.check_schedule, Schedule.emit, isa.validate = self._saved


def hashes(compiled) -> dict:
    """SHA-256 (hex) of the encoded program, of the tensors' layouts, of the links, and of all three."""
    s = compiled.schedule
    prog = hashlib.sha256(np.ascontiguousarray(compiled.encoded()).tobytes()).hexdigest()
    lay = hashlib.sha256()
    for name in sorted(s.tensors):
        t = s.tensors[name]
        lay.update(name.encode())
        for arr in (t.layout.slice, t.layout.addr, t.tile_slice, t.tile_addr):
            if arr is not None:
                a = np.ascontiguousarray(np.asarray(arr, np.int64))
                lay.update(repr(a.shape).encode() + a.tobytes())
    links = hashlib.sha256(np.asarray(s.links, np.int64).tobytes()).hexdigest()
    lay = lay.hexdigest()
    every = hashlib.sha256((prog + lay + links).encode()).hexdigest()
    return {"program": prog, "layouts": lay, "links": links, "all": every}


def bench(name: str, make, repeat: int = 1) -> dict:
    """Compile one case `repeat` times; the times are those of the fastest run."""
    fn, params, inputs, cfg = make()
    best = None
    for _ in range(repeat):
        with _Timed() as tm:
            t = time.process_time()
            c = C.compile_fn(fn, params, *inputs, cfg=cfg)
            run = (time.process_time() - t, tm.check, tm.emit, c)
        best = run if best is None or run[0] < best[0] else best
        del c, run
    total, check, emit, c = best
    return {
        "case": name,
        "config": cfg.name,
        "instructions": len(c.schedule.instrs),
        "cycles": c.cycles,
        "seconds": total,
        "wall_s": c.compile_seconds,
        "lower_place_s": total - check - emit,
        "check_s": check,
        "emit_s": emit,
        "sha256": hashes(c),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", action="store_true", help="also the groqchip1 FFN block at T=128 (~245k instructions)")
    ap.add_argument("--only", nargs="*", help="run only these cases")
    ap.add_argument("--repeat", type=int, default=1, help="compile each case this many times, report the fastest")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--compare", help="a JSON from an earlier run: check that every common case's hashes match")
    args = ap.parse_args()
    cases = dict(CASES, **(BIG if args.big else {}))
    if args.only:
        cases = {k: v for k, v in {**CASES, **BIG}.items() if k in args.only}
    C.compile_fn(_softmax_case()[0], {}, *_softmax_case()[2], cfg=L.small())  # warm up JAX's tracing
    print(
        f"{'case':<14} {'config':<10} {'instrs':>9} {'cycles':>8} {'cpu s':>8} {'lower+place':>11} {'check':>7} "
        f"{'emit':>7}  sha256"
    )
    rows = []
    for name, make in cases.items():
        r = bench(name, make, args.repeat)
        rows.append(r)
        print(
            f"{r['case']:<14} {r['config']:<10} {r['instructions']:>9,} {r['cycles']:>8,} {r['seconds']:>8.2f} "
            f"{r['lower_place_s']:>11.2f} {r['check_s']:>7.2f} {r['emit_s']:>7.2f}  {r['sha256']['all'][:16]}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "cases": rows}, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            base = {r["case"]: r for r in json.load(f)["cases"]}
        bad = 0
        for r in rows:
            b = base.get(r["case"])
            if b is None:
                continue
            same = b["sha256"] == r["sha256"]
            bad += not same
            print(
                f"{r['case']:<14} {'identical' if same else 'DIFFERENT':<9} {b['seconds']:>8.2f} s -> "
                f"{r['seconds']:>8.2f} s ({b['seconds'] / r['seconds']:.1f}x)"
            )
        if bad:
            raise SystemExit(f"{bad} case(s) differ from {args.compare}")


if __name__ == "__main__":
    main()

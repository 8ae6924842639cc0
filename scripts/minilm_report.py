"""Compile all-MiniLM-L6-v2 for groqchip1, simulate one sentence, and report: compile time, instructions, cycles,
latency, utilisation, SRAM, simulator wall time, and the agreement with the flax model in the same policy.

    python scripts/minilm_report.py --seq-len 128 --policy fp16 --json minilm.json

Slow: at sequence length 128 the compile takes about 20 minutes and the simulation about 15 on a loaded 2-core
CPU (README, "Sentence embeddings and decoding on the chip").
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lpu_jax.embed import ChipEmbedder
from lpu_jax.reference import minilm
from lpu_jax.reference import models as M

SENTENCE = "The cat sat."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--policy", choices=["fp16", "int8"], default="fp16")
    ap.add_argument("--layers", type=int, default=None, help="the first N layers only")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    emb = ChipEmbedder(args.policy, args.seq_len, layers=args.layers)
    compile_s = time.perf_counter() - t0
    rep = emb.report()
    print(rep)
    vec, runs = emb.embed([SENTENCE])
    ids, mask = minilm.encode([SENTENCE], args.seq_len)
    ref = np.asarray(M.embed_batch(emb.params, emb.model_cfg, ids, mask, args.policy))
    cos = float(np.dot(vec[0], ref[0]))
    rows = [
        ("sequence length", args.seq_len),
        ("policy", args.policy),
        ("instructions", f"{rep.instructions:,}"),
        ("cycles", f"{rep.cycles:,}"),
        ("latency us", f"{rep.latency_us:.2f}"),
        ("compile s", f"{compile_s:.1f}"),
        ("simulate s", f"{runs[0].wall_seconds:.1f}"),
        ("hazards", runs[0].hazards),
        ("cosine vs flax (same policy)", f"{cos:.8f}"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    if args.json:
        out = {"compile_seconds": compile_s, "sim_seconds": runs[0].wall_seconds, "cosine": cos}
        out.update(rep.as_dict())
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()

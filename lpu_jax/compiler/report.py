"""The compile report: cycles, latency, what every unit did, SRAM per hemisphere, the critical path."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from .. import isa
from .schedule import Schedule

__all__ = ["Report", "make_report"]


@dataclasses.dataclass
class Report:
    config: str
    cycles: int
    latency_us: float
    clock_mhz: float
    instructions: int
    utilisation: dict  # unit kind -> fraction of its queue-cycles that issue an instruction
    mxm_mac_utilisation: float
    macs: int
    sram_bytes: dict  # "W" / "E" hemisphere -> bytes placed, plus "total" and "capacity"
    critical_path: list  # [(op kind, source, first cycle, last cycle)]
    ops: Counter
    compile_seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ops"] = dict(self.ops)
        return d

    def __str__(self) -> str:
        lines = [
            f"config {self.config}: {self.cycles:,} cycles = {self.latency_us:.2f} us at {self.clock_mhz:.0f} MHz; "
            f"{self.instructions:,} instructions; compiled in {self.compile_seconds:.1f} s",
            "unit utilisation (issue slots used): "
            + ", ".join(f"{k} {v:.1%}" for k, v in self.utilisation.items())
            + f"; MXM MACs {self.mxm_mac_utilisation:.1%} of peak ({self.macs:,} MACs)",
            f"SRAM used: west {self.sram_bytes['W']:,} B, east {self.sram_bytes['E']:,} B, total "
            f"{self.sram_bytes['total']:,} of {self.sram_bytes['capacity']:,} B",
            "critical path (last op first):",
        ]
        for kind, src, a, b in self.critical_path[:12]:
            lines.append(f"  {kind:<14} cycles {a:>8,} .. {b:>8,}  {src}")
        if len(self.critical_path) > 12:
            lines.append(f"  ... {len(self.critical_path) - 12} more")
        return "\n".join(lines)


def make_report(sched: Schedule, compile_seconds: float = 0.0) -> Report:
    cfg = sched.cfg
    cycles = max(sched.cycles, 1)
    names = isa.queue_names(cfg)
    kinds = Counter(isa.queue_unit(q) for q in names)
    used = Counter()
    for p in sched.instrs:
        used[isa.queue_unit(p.queue)] += isa.occupancy(p.ins.mnemonic)
    util = {k: used[k] / (kinds[k] * cycles) for k in ("MEM", "VXM", "MXM", "SXM") if kinds[k]}
    L = cfg.n_lanes
    # useful MACs, and the MXM time they take: an fp16 MAC costs four int8 MAC slots (P22)
    macs = slots = 0
    for o in sched.ops:
        if o.kind == "matmul":
            m, k, n = o.detail["shape"]
            macs += m * k * n
            slots += m * k * n * (4 if o.detail.get("dtype") == "f16" else 1)
    peak = cfg.n_planes * L * L
    mac_util = slots / (peak * cycles) if peak else 0.0
    h = cfg.mem_per_hemisphere
    side = {"W": 0, "E": 0}  # distinct words: a word that held several tensors in turn counts once
    keys = [
        (t.layout.slice.astype(np.int64) * cfg.mem_words + t.layout.addr).reshape(-1) for t in sched.tensors.values()
    ]
    words = np.unique(np.concatenate(keys or [np.zeros(0, np.int64)]))
    for s in words // cfg.mem_words:
        side["W" if s < h else "E"] += L
    side["total"] = side["W"] + side["E"]
    side["capacity"] = cfg.sram_bytes
    # critical path: from the op that ends last, back through the op it depends on that ends last
    path = []
    if sched.ops:
        i = max(range(len(sched.ops)), key=lambda j: sched.ops[j].last)
        seen = set()
        while i is not None and i not in seen:
            seen.add(i)
            o = sched.ops[i]
            path.append((o.kind, o.source, int(o.first), int(o.last)))
            deps = [d for d in o.detail.get("deps", ()) if d != i]
            i = max(deps, key=lambda j: sched.ops[j].last) if deps else None
    return Report(
        config=cfg.name,
        cycles=sched.cycles,
        latency_us=cfg.latency_s(sched.cycles) * 1e6,
        clock_mhz=cfg.clock_hz / 1e6,
        instructions=len(sched.instrs),
        utilisation=util,
        mxm_mac_utilisation=mac_util,
        macs=macs,
        sram_bytes=side,
        critical_path=path,
        ops=Counter(o.kind for o in sched.ops),
        compile_seconds=compile_seconds,
    )

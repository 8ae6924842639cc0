"""SCALE-Sim v3 on GEMM shapes: its compute cycles and its wall time, for the side-by-side in docs/benchmarks.md.

Runs inside SCALE-Sim's own virtual environment (it needs numpy < 2.3, the project does not):

    python -m venv .venv-scalesim && .venv-scalesim/bin/pip install scalesim==3.0.0 'numpy<2.3'
    .venv-scalesim/bin/python scripts/scalesim_gemm.py --shapes 320x320x320 1024x1024x1024 --json out.json

For each shape MxKxN (C[M, N] = A[M, K] @ B[K, N]) it writes SCALE-Sim's INI config (all five sections its parser
reads: [general], [architecture_presets], [layout], [sparsity], [run_presets]; SCALE-Sim ships none), a one-layer
GEMM topology CSV and an empty layout CSV, runs the simulator through its Python API with traces off
(`save_disk_space=True`; the command line ignores `-s`), times the run, and reads the layer's row of
COMPUTE_REPORT.csv (`simulator.get_total_cycles()` is broken in 3.0.0). The array is 320 x 320, weight stationary,
like one MXM plane.

This module imports nothing from lpu_jax and imports scalesim only inside `run_shape`, so bench.py and the tests
can use its writers from the project's environment.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["COMPUTE_COLUMNS", "config_text", "layout_text", "parse_shape", "read_compute_report", "topology_text"]

COMPUTE_COLUMNS = (
    "total_cycles_incl_prefetch",
    "total_cycles",
    "stall_cycles",
    "overall_util_pct",
    "mapping_efficiency_pct",
    "compute_util_pct",
)
"""COMPUTE_REPORT.csv's columns after LayerID, in SCALE-Sim 3.0.0's order (simulator.generate_reports)."""


def parse_shape(s: str) -> tuple[int, int, int]:
    """'MxKxN' -> (M, K, N), each a positive int; ValueError naming the text otherwise."""
    try:
        m, k, n = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ValueError(f"a GEMM shape must look like 1024x1024x1024 (MxKxN), got {s!r}") from None
    if min(m, k, n) < 1:
        raise ValueError(f"a GEMM shape needs positive M, K, N, got {s!r}")
    return m, k, n


def config_text(
    run_name: str = "lpu_gemm",
    rows: int = 320,
    cols: int = 320,
    dataflow: str = "ws",
    ifmap_kb: int = 6144,
    filter_kb: int = 6144,
    ofmap_kb: int = 2048,
) -> str:
    """SCALE-Sim 3.0.0's INI config: every key scale_config.read_conf_file reads, in its five sections.

    Bandwidth mode CALC (SCALE-Sim estimates the DRAM bandwidth that keeps the array fed, so the report's
    stalls come from its SRAM model alone); no sparsity, no custom layout, no Ramulator trace. Offsets are
    SCALE-Sim's defaults. No [network_presets] section: 3.0.0 reads its key from the wrong section."""
    if dataflow not in ("ws", "os", "is"):
        raise ValueError(f"dataflow must be ws, os or is, got {dataflow!r}")
    return "\n".join(
        [
            "[general]",
            f"run_name = {run_name}",
            "",
            "[architecture_presets]",
            f"ArrayHeight = {rows}",
            f"ArrayWidth = {cols}",
            f"IfmapSramSzkB = {ifmap_kb}",
            f"FilterSramSzkB = {filter_kb}",
            f"OfmapSramSzkB = {ofmap_kb}",
            "IfmapOffset = 0",
            "FilterOffset = 10000000",
            "OfmapOffset = 20000000",
            f"Dataflow = {dataflow}",
            "Bandwidth = 10",
            "ReadRequestBuffer = 32",
            "WriteRequestBuffer = 32",
            "",
            "[layout]",
            "IfmapCustomLayout = False",
            "IfmapSRAMBankBandwidth = 10",
            "IfmapSRAMBankNum = 10",
            "IfmapSRAMBankPort = 2",
            "FilterCustomLayout = False",
            "FilterSRAMBankBandwidth = 10",
            "FilterSRAMBankNum = 10",
            "FilterSRAMBankPort = 2",
            "",
            "[sparsity]",
            "SparsitySupport = false",
            "SparseRep = ellpack_block",
            "OptimizedMapping = false",
            "BlockSize = 8",
            "RandomNumberGeneratorSeed = 40",
            "",
            "[run_presets]",
            "InterfaceBandwidth = CALC",
            "UseRamulatorTrace = False",
            "",
        ]
    )


def topology_text(layers) -> str:
    """SCALE-Sim's GEMM topology CSV: a header, then one row `name, M, N, K,` per (name, (M, K, N)).

    SCALE-Sim reads a GEMM row as M (ifmap rows), N (filters, the output columns), K (the reduction), and drops
    the text after the last comma, so every row ends with one."""
    out = ["Layer, M, N, K,"]
    for name, (m, k, n) in layers:
        if "," in name:
            raise ValueError(f"a layer name may not hold a comma, got {name!r}")
        out.append(f"{name}, {m}, {n}, {k},")
    return "\n".join(out) + "\n"


def layout_text() -> str:
    """An empty layout CSV (header only): SCALE-Sim opens one even with custom layouts off."""
    return (
        "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline Factor, "
        "Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, "
        "IFMAP Height Intraline Order, IFMAP Width Intraline Order, Channel Intraline Order, "
        "Filter Height Intraline Order, Filter Width Intraline Order, Num Filter Intraline Order,\n"
    )


def read_compute_report(path) -> list[dict]:
    """COMPUTE_REPORT.csv -> one dict per layer: layer_id and COMPUTE_COLUMNS (cycles as int, percents as float)."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for n, row in enumerate(reader, start=2):
            cells = [c.strip() for c in row if c.strip()]
            if not cells:
                continue
            if len(cells) != 1 + len(COMPUTE_COLUMNS):
                raise ValueError(
                    f"{path}:{n}: expected {1 + len(COMPUTE_COLUMNS)} values (LayerID and {', '.join(COMPUTE_COLUMNS)})"
                    f", got {len(cells)}"
                )
            d = {"layer_id": int(cells[0])}
            for k, v in zip(COMPUTE_COLUMNS, cells[1:]):
                d[k] = float(v) if k.endswith("_pct") else int(float(v))
            rows.append(d)
    return rows


def run_shape(shape, workdir, rows: int = 320, cols: int = 320, sram_kb=(6144, 6144, 2048)) -> dict:
    """Run SCALE-Sim on one GEMM in `workdir`; returns its compute report row, the wall time and the versions."""
    from scalesim.scale_sim import scalesim

    m, k, n = shape
    name = f"gemm_{m}x{k}x{n}"
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg_path, topo_path, layout_path = work / f"{name}.cfg", work / f"{name}.csv", work / f"{name}_layout.csv"
    cfg_path.write_text(config_text(name, rows, cols, "ws", *sram_kb))
    topo_path.write_text(topology_text([(name, shape)]))
    layout_path.write_text(layout_text())
    t0 = time.perf_counter()
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(cfg_path),
        topology=str(topo_path),
        layout=str(layout_path),
        input_type_gemm=True,
    )
    sim.run_scale(top_path=str(work))
    wall = time.perf_counter() - t0
    (row,) = read_compute_report(work / name / "COMPUTE_REPORT.csv")
    return {
        "shape": f"{m}x{k}x{n}",
        "array": f"{rows}x{cols}",
        "dataflow": "ws",
        "sram_kb": dict(zip(("ifmap", "filter", "ofmap"), sram_kb)),
        "wall_s": wall,
        **row,
    }


class _Parser(argparse.ArgumentParser):
    """argparse with one line on stderr for a bad argument (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None) -> int:
    ap = _Parser(prog="scalesim_gemm.py", description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["320x320x320", "1024x1024x1024"], help="MxKxN shapes")
    ap.add_argument("--array", type=int, default=320, help="systolic array height and width (default 320)")
    ap.add_argument(
        "--sram-kb",
        nargs=3,
        type=int,
        default=[6144, 6144, 2048],
        metavar=("IFMAP", "FILTER", "OFMAP"),
        help="SRAM sizes in kB (default 6144 6144 2048)",
    )
    ap.add_argument("--workdir", help="where SCALE-Sim writes its reports (default: a temporary folder)")
    ap.add_argument("--json", help="write the results as JSON to this path (default: print them)")
    args = ap.parse_args(argv)
    try:
        shapes = [parse_shape(s) for s in args.shapes]
        import scalesim  # noqa: F401  (a clear error before any work when run outside its venv)
    except (ValueError, ImportError) as e:
        print(f"scalesim_gemm: error: {e}", file=sys.stderr)
        return 2
    from importlib.metadata import version

    out = {
        "scalesim": version("scalesim"),
        "numpy": version("numpy"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            out["results"].append(run_shape(shape, args.workdir or tmp, args.array, args.array, tuple(args.sram_kb)))
            print(json.dumps(out["results"][-1]), file=sys.stderr, flush=True)
            if args.json:  # after every shape: a run stopped part way keeps the shapes it finished
                Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Static chip configuration: geometry, floorplan, latencies and every model assumption.

`ChipConfig` is frozen and hashable, so it is a static argument under `jax.jit`. Nothing in it is traced.

Facts come from `shared/spec/architecture.md` (tags P20, P22, G). Fields whose values the public record does
not give are marked **[A]** in their docstring, with the default's justification; change them to explore
what-if chips. `ChipConfig.validate()` runs on construction and raises `ConfigError` naming the bad field.

Derived geometry (all static Python / numpy, computed once):
  * slice index s in [0, n_slices): west to east across the floorplan;
  * stream-register position `slice_positions[s]` in [0, n_positions);
  * MEM slice names "W0".."W43" count outward from the VXM in the west hemisphere, "E0".."E43" in the east
    (P20 numbers MEM slices per hemisphere); MEM index m in [0, n_mem) runs west to east (m=0 is W43).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np

__all__ = [
    "ChipConfig",
    "ConfigError",
    "DEFAULT_DELAYS",
    "groqchip1",
    "small",
    "tiny",
]


class ConfigError(ValueError):
    """A `ChipConfig` field has a bad value. The message names the field."""


# [A] Functional delays d_func, in cycles, per mnemonic class. The public record gives none (architecture.md
# §3, §8). Defaults: MEM read 2 (an SRAM access plus a stream-register hop, P20 Fig. 6 shows reads landing on
# the stream one pipeline stage after the access); MEM write commit 1; indirect accesses one cycle more for the
# address crossbar; VXM integer/bitwise 1, float add/mul 2, conversions 2, requantisation 3 (a convert, a multiply
# and a convert chained on the 4x4 ALU mesh), transcendentals 6; Notify's release reaches every queue after 1.
# MXM (docs/mxm.md): IW's install takes effect 2 cycles after issue; ABC's dot product reaches the accumulators 4
# cycles after the activation enters (plus the cross-superlane reduction, n_superlanes - 1 cycles, added by the
# model); ACC's accumulate-and-emit takes 1. SXM (docs/sxm.md): shifts/rotates 2, distribute 2, permute 3 (a full
# crossbar), transpose 3; moves toward lower superlanes add the stagger they cross.
DEFAULT_DELAYS: tuple[tuple[str, int], ...] = (
    ("Read", 2),
    ("Write", 1),
    ("Gather", 3),
    ("Scatter", 2),
    ("Notify", 1),
    ("vxm.int", 1),
    ("vxm.float", 2),
    ("vxm.convert", 2),
    ("vxm.requant", 3),
    ("vxm.transcendental", 6),
    ("mxm.iw", 2),
    ("mxm.abc", 4),
    ("mxm.acc", 1),
    ("sxm.shift", 2),
    ("sxm.distribute", 2),
    ("sxm.permute", 3),
    ("sxm.transpose", 3),
)

KINDS = ("MEM", "VXM", "SXM", "MXM")


def standard_floorplan(mem_per_hemisphere: int) -> tuple[str, ...]:
    """The published floorplan, west to east: MXM MXM | SXM | MEM xN | VXM | MEM xN | SXM | MXM MXM (P20)."""
    return (
        ("MXM", "MXM", "SXM")
        + ("MEM",) * mem_per_hemisphere
        + ("VXM",)
        + ("MEM",) * mem_per_hemisphere
        + ("SXM", "MXM", "MXM")
    )


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Static description of one chip. Frozen and hashable: pass it as a static argument under jit.

    Geometry fields are published facts (P20); fields marked [A] are model assumptions with defaults.
    """

    name: str = "groqchip1"
    # --- geometry (P20) ---
    n_superlanes: int = 20
    """Superlanes per vector (P20: 20). A vector has n_superlanes * lanes_per_superlane lanes/bytes."""
    lanes_per_superlane: int = 16
    """Lanes in one superlane (P20: 16); the minimum vector length."""
    n_streams: int = 32
    """Streams per direction (P20: 32 eastward + 32 westward), each one byte per lane."""
    floorplan: tuple[str, ...] = standard_floorplan(44)
    """Slice kinds west to east (P20): MXM MXM | SXM | MEM x44 | VXM | MEM x44 | SXM | MXM MXM."""
    mem_words: int = 8192
    """Addresses per MEM slice (P20: 8,192 x 320 B = 2.5 MiB). Split into two banks of mem_words/2."""
    vxm_alus: int = 16
    """VXM ALUs, one ICU queue each (P20: 16 ALUs per lane as a 4x4 mesh; 16 VXM queues)."""
    clock_hz: float = 900e6
    """Clock used to turn cycles into latency (G: 900 MHz nominal)."""
    # --- model assumptions [A] ---
    slice_positions: tuple[int, ...] | None = None
    """[A] Stream-register position of each slice (None: slice s sits at position s, one register per slice,
    as architecture.md §3 assumes). Must be strictly increasing; gaps model extra pipeline registers."""
    delays: tuple[tuple[str, int], ...] = DEFAULT_DELAYS
    """[A] Functional delay d_func per instruction class (see DEFAULT_DELAYS for the reasons). Each >= 1."""
    group_byte_order: str = "little"
    """[A] Byte k of a multi-byte element rides on stream base+k ("little") or base+width-1-k ("big")."""
    group_aligned: bool = True
    """[A] A 2- or 4-stream group must start at a stream index that is a multiple of its width."""
    stagger_cycles: int = 20
    """[A] Superlane stagger N of P20's T = N + d_func + delta. The model keeps vectors in superlane-0 time
    (exact for lane-local work: superlane k always runs k cycles later) and adds N once to every reported
    end-to-end latency."""
    mxm_acc_rows: int = 320
    """[A] Accumulator rows per MXM plane (int32/fp32 vectors of n_lanes). The public record gives the MXM's
    accumulate instruction but not the buffer depth; 320 (one plane's worth of rows) lets a GEMM keep a 320-row
    block of partial sums in the plane across every K tile."""
    sxm_units: int = 4
    """[A] SXM units (one ICU queue each) per SXM slice; each runs one shift/rotate/permute/distribute/transpose per
    cycle. P20 counts 28 SXM queues in all; how they map to units is not public."""
    max_delay_slots: int = 32
    """Depth of the in-flight result rings (must exceed every delay, including the cross-superlane terms)."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def need(cond: bool, field: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"ChipConfig.{field}: {msg}")

        for f in ("n_superlanes", "lanes_per_superlane", "n_streams", "mem_words", "vxm_alus"):
            v = getattr(self, f)
            need(isinstance(v, int) and v >= 1, f, f"must be a positive int, got {v!r}")
        need(self.n_streams % 4 == 0, "n_streams", f"must be a multiple of 4 (32-bit groups), got {self.n_streams}")
        need(self.mem_words % 2 == 0, "mem_words", f"must be even (two banks), got {self.mem_words}")
        need(self.mem_words <= 1 << 16, "mem_words", f"must be <= 65536 (16-bit gather maps), got {self.mem_words}")
        need(self.clock_hz > 0, "clock_hz", f"must be positive, got {self.clock_hz}")
        need(isinstance(self.floorplan, tuple), "floorplan", "must be a tuple of slice kinds")
        bad = [k for k in self.floorplan if k not in KINDS]
        need(not bad, "floorplan", f"unknown slice kind {bad[:1]}; known kinds are {KINDS}")
        need(self.floorplan.count("VXM") == 1, "floorplan", "must hold exactly one VXM slice")
        v = self.floorplan.index("VXM")
        west, east = self.floorplan[:v], self.floorplan[v + 1 :]
        need(
            west.count("MEM") == east.count("MEM") >= 1,
            "floorplan",
            "must hold the same number (>= 1) of MEM slices in each hemisphere",
        )
        need(
            all(k == "MEM" for k in west[len(west) - west.count("MEM") :])
            and all(k == "MEM" for k in east[: east.count("MEM")]),
            "floorplan",
            "MEM slices of each hemisphere must be contiguous and adjacent to the VXM",
        )
        if self.slice_positions is not None:
            p = self.slice_positions
            need(len(p) == len(self.floorplan), "slice_positions", f"needs {len(self.floorplan)} entries, got {len(p)}")
            need(
                p[0] >= 0 and all(b > a for a, b in zip(p, p[1:])),
                "slice_positions",
                "must be >= 0 and strictly increasing",
            )
        names = [n for n, _ in self.delays]
        need(len(set(names)) == len(names), "delays", "names an instruction class twice")
        known = {n for n, _ in DEFAULT_DELAYS}
        unknown = sorted(set(names) - known)
        need(not unknown, "delays", f"unknown instruction class {unknown[:1]}; known: {sorted(known)}")
        missing = sorted(known - set(names))
        need(not missing, "delays", f"missing instruction class {missing[:1]}")
        for n, d in self.delays:
            need(
                isinstance(d, int) and 1 <= d < self.max_delay_slots,
                "delays",
                f"{n}={d!r} must be an int in [1, max_delay_slots)",
            )
        need(
            self.group_byte_order in ("little", "big"),
            "group_byte_order",
            f"must be 'little' or 'big', got {self.group_byte_order!r}",
        )
        need(isinstance(self.stagger_cycles, int) and self.stagger_cycles >= 0, "stagger_cycles", "must be an int >= 0")
        need(isinstance(self.mxm_acc_rows, int) and self.mxm_acc_rows >= 1, "mxm_acc_rows", "must be an int >= 1")
        need(isinstance(self.sxm_units, int) and self.sxm_units >= 1, "sxm_units", "must be an int >= 1")
        need(
            "MXM" not in self.floorplan or self.n_lanes <= 1024,
            "n_superlanes",
            f"an MXM plane of {self.n_lanes} x {self.n_lanes} is beyond the model's exact int8 dot products "
            "(at most 1024 lanes: every int8 sum then stays below 2^24, exact in fp32)",
        )
        cross = self.n_superlanes - 1
        for n in ("mxm.abc", "sxm.shift", "sxm.permute"):
            d = dict(self.delays)[n] + cross
            need(
                d < self.max_delay_slots,
                "max_delay_slots",
                f"must exceed {n} plus the cross-superlane term ({d}), got {self.max_delay_slots}",
            )

    # ------------------------------------------------------------------ derived geometry
    def replace(self, **kw) -> ChipConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **kw)

    @property
    def n_lanes(self) -> int:
        """Bytes per stream vector (320 on groqchip1)."""
        return self.n_superlanes * self.lanes_per_superlane

    @property
    def n_slices(self) -> int:
        return len(self.floorplan)

    @cached_property
    def positions(self) -> np.ndarray:
        """Stream-register position of every slice, int32 [n_slices]."""
        p = range(self.n_slices) if self.slice_positions is None else self.slice_positions
        return np.asarray(p, np.int32)

    @property
    def n_positions(self) -> int:
        """Stream-register positions per direction (the stream ring's length)."""
        return int(self.positions[-1]) + 1

    @cached_property
    def mem_slices(self) -> np.ndarray:
        """Slice index of each MEM slice, west to east, int32 [n_mem]."""
        return np.asarray([i for i, k in enumerate(self.floorplan) if k == "MEM"], np.int32)

    @property
    def n_mem(self) -> int:
        return len(self.mem_slices)

    @property
    def mem_per_hemisphere(self) -> int:
        return self.n_mem // 2

    @property
    def vxm_slice(self) -> int:
        return self.floorplan.index("VXM")

    @cached_property
    def mxm_slices(self) -> np.ndarray:
        """Slice index of each MXM plane, west to east, int32 [n_planes] (P20: one 320 x 320 plane per MXM slice)."""
        return np.asarray([i for i, k in enumerate(self.floorplan) if k == "MXM"], np.int32)

    @property
    def n_planes(self) -> int:
        """MXM planes (P20: 4). Each is an n_lanes x n_lanes array of MACs."""
        return len(self.mxm_slices)

    def plane_in_dir(self, p: int) -> int:
        """Direction (0 east, 1 west) of the streams that bring plane p its weights and activations: a plane west
        of the VXM is fed by westward streams and sends its results east, and the reverse in the east."""
        return 1 if self.mxm_slices[p] < self.vxm_slice else 0

    @cached_property
    def sxm_slices(self) -> np.ndarray:
        """Slice index of each SXM slice, west to east, int32 [n_sxm]."""
        return np.asarray([i for i, k in enumerate(self.floorplan) if k == "SXM"], np.int32)

    @property
    def n_sxm_units(self) -> int:
        return len(self.sxm_slices) * self.sxm_units

    @property
    def sxm_names(self) -> tuple[str, ...]:
        """Name of each SXM slice west to east: "W", "E" for the standard floorplan (else "S0", "S1", ...)."""
        if len(self.sxm_slices) == 2 and self.sxm_slices[0] < self.vxm_slice < self.sxm_slices[1]:
            return ("W", "E")
        return tuple(f"S{i}" for i in range(len(self.sxm_slices)))

    @cached_property
    def mem_names(self) -> tuple[str, ...]:
        """Name of each MEM slice, west to east: W{h-1} .. W0, E0 .. E{h-1} (numbered outward from the VXM)."""
        h = self.mem_per_hemisphere
        return tuple(f"W{h - 1 - i}" for i in range(h)) + tuple(f"E{i}" for i in range(h))

    @property
    def bank_words(self) -> int:
        """Addresses per bank. [A] bank = address // bank_words (low half bank 0, high half bank 1)."""
        return self.mem_words // 2

    @property
    def sram_bytes(self) -> int:
        return self.n_mem * self.mem_words * self.n_lanes

    def latency_s(self, cycles: int) -> float:
        """End-to-end latency in seconds of a run of `cycles` cycles: the superlane stagger (`stagger_cycles`)
        is added once, since the model keeps vectors in superlane-0 time and superlane 19 finishes 19 cycles
        later (architecture.md §3)."""
        return (cycles + self.stagger_cycles) / self.clock_hz

    def delay(self, cls: str) -> int:
        """Functional delay d_func of an instruction class (see DEFAULT_DELAYS)."""
        return dict(self.delays)[cls]

    @property
    def delay_slots(self) -> int:
        return self.max_delay_slots


def groqchip1() -> ChipConfig:
    """GroqChip1 as published (P20): 20x16 lanes, 32+32 streams, 88 MEM slices of 8,192 words, 16 VXM ALUs."""
    return ChipConfig()


def tiny() -> ChipConfig:
    """Same floorplan shape, scaled down for fast tests: 2x16 lanes, 16+16 streams, 2+2 MEM slices of 512 words,
    4 ALUs, 4 MXM planes of 32 x 32 with 32 accumulator rows, 2 SXM units per SXM slice."""
    return ChipConfig(
        name="tiny",
        n_superlanes=2,
        n_streams=16,
        floorplan=standard_floorplan(2),
        mem_words=512,
        vxm_alus=4,
        stagger_cycles=2,
        mxm_acc_rows=32,
        sxm_units=2,
    )


def small() -> ChipConfig:
    """`tiny` with room for compiled models: 2x16 lanes, 16+16 streams, 8+8 MEM slices of 1,024 words (a 32-bit
    tensor needs 4 slices in one hemisphere, one per byte), 4 ALUs, 4 MXM planes of 32 x 32, 4 SXM units per
    SXM slice. The compiler's fast tests run on it."""
    return ChipConfig(
        name="small",
        n_superlanes=2,
        n_streams=16,
        floorplan=standard_floorplan(8),
        mem_words=1024,
        vxm_alus=4,
        stagger_cycles=2,
        mxm_acc_rows=32,
        sxm_units=4,
    )

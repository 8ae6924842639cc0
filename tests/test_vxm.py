"""VXM element semantics (`lpu_jax.vxm.vxm_compute`) against the plain-numpy reference `numpy_ref.ref_vxm`, bit for bit.

Every (op, dtype) of `isa.VXM_OPS` (every convert pair, requant) is checked on: exhaustive operands where that is
cheap (all i8/u8 pairs, all 65536 fp16 patterns for unary ops and conversions, all i16 for conversions), cross
products of special-value pools (integer extremes, shift amounts >= width and "negative", +-0, +-inf, NaN payloads,
fp32 subnormals, fp16 subnormals, conversion saturation boundaries, round-half-even ties), seeded random operands,
and hypothesis-drawn batches of 16 rows with 16 different (op, dtype). Bits above an element's width are filled
with garbage on most lanes. Comparisons are on uint32 bit patterns; the tolerance is zero. Hand-computed known
answers check the reference and the model alike; mul.f32 is probed densely around the 2^-126 underflow boundary
(IEEE rounding, then flush: not the backend's FTZ); `active` rows are checked; one program adds two i8 vectors
end to end through the simulator on tiny().

`vxm_compute` is jitted once and always called with one shape [A, L] = [16, 4096] (and an explicit `active`).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import TRACE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy_ref import FLOATS, INT_RANGE, INTS, WIDTH, out_type, ref_vxm

import lpu_jax
from lpu_jax import isa
from lpu_jax.dtypes import DTYPES
from lpu_jax.isa import E, Instruction, W
from lpu_jax.vxm import vxm_compute

A, L = 16, 4096  # the one shape vxm_compute is compiled for
VXM = jax.jit(vxm_compute)
CODE = {d.name: d.code for d in DTYPES}
OP = {k: v[0] for k, v in isa.VXM_OPS.items()}
ALL_TYPES = INTS + FLOATS
SHIFTS = ("shl", "shr", "shru")


def _combos() -> list[tuple[str, str, str]]:
    out = []
    for op, (_, _, types) in isa.VXM_OPS.items():
        for t1 in types:
            if op == "convert":
                out += [(op, t1, t2) for t2 in ALL_TYPES]
            else:
                out.append((op, t1, out_type(op, t1, t1)))
    return out


COMBOS = _combos()
MASK = {t: (1 << (8 * WIDTH[t])) - 1 for t in ALL_TYPES}


# --------------------------------------------------------------------------- running and comparing
def _run_rows(rows: list[tuple], active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """rows: (op, t1, t2, a[L], b[L], c[L]) * k (k <= A; padded with zero add.i8 rows). Returns bits, t_out."""
    k = len(rows)
    rows = rows + [("add", "i8", "i8", *(np.zeros(L, np.uint32),) * 3)] * (A - k)
    op = np.array([OP[r[0]] for r in rows], np.int32)
    t1 = np.array([CODE[r[1]] for r in rows], np.int32)
    t2 = np.array([CODE[r[2]] for r in rows], np.int32)
    a, b, c = (np.stack([r[i] for r in rows]).astype(np.uint32) for i in (3, 4, 5))
    act = np.ones(A, bool) if active is None else np.concatenate([active, np.ones(A - k, bool)])
    bits, t_out = VXM(op, t1, t2, a, b, c, act)
    return np.asarray(bits)[:k], np.asarray(t_out)[:k]


def run_cases(cases: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """cases: (op, t1, t2, a, b, c) with 1-D uint32 operands of any length n. Lanes are spread over rows of L,
    rows of different cases share calls (so they must not interfere). Returns (bits [n], t_out per row)."""
    rows, owner = [], []
    for i, (op, t1, t2, a, b, c) in enumerate(cases):
        n = len(a)
        k = -(-n // L)
        pa, pb, pc = (np.resize(np.asarray(x, np.uint32), k * L).reshape(k, L) for x in (a, b, c))
        for r in range(k):
            rows.append((op, t1, t2, pa[r], pb[r], pc[r]))
            owner.append(i)
    bits, touts = [], []
    for s in range(0, len(rows), A):
        got, t_out = _run_rows(rows[s : s + A])
        bits.append(got)
        touts.append(t_out)
    bits, touts, owner = np.concatenate(bits), np.concatenate(touts), np.array(owner)
    return [(bits[owner == i].reshape(-1)[: len(c[3])], touts[owner == i]) for i, c in enumerate(cases)]


def _hex(x) -> str:
    return f"{int(x):#010x}"


def assert_cases(cases: list[tuple]) -> None:
    results = run_cases(cases)
    errors = []
    for (op, t1, t2, a, b, c), (got, t_out) in zip(cases, results):
        want, tw = ref_vxm(op, t1, t2, a, b, c)
        assert np.all(t_out == CODE[tw]), (op, t1, t2, t_out, tw)
        bad = got != want
        for i in np.flatnonzero(bad)[:3]:
            errors.append(
                f"{op}.{t1}.{t2} a={_hex(a[i])} b={_hex(b[i])} c={_hex(c[i])}: got {_hex(got[i])} want {_hex(want[i])}"
                f" ({int(bad.sum())} bad lanes)"
            )
    assert not errors, "\n".join(errors[:30])


# --------------------------------------------------------------------------- operand pools and generators
def _f32_bits(v) -> np.ndarray:
    return np.asarray(v, np.float32).view(np.uint32)


def _int_pool(t: str) -> np.ndarray:
    lo, hi = INT_RANGE[t]
    n = 8 * WIDTH[t]
    vals = {0, 1, -1, 2, -2, 3, lo, lo + 1, hi, hi - 1, hi // 2, lo // 2, n - 1, n, n + 1, 2 * n, 2 * n - 1}
    vals |= {7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 127, 128, 129, 255, 256, 257, 0x7FFF, 0x8000, 0xFFFF, 0x10000}
    vals |= {2**24, 2**24 + 1, 2**24 + 3, 2**25 + 2, 2**31 - 64, 2**31 - 65, 2**31 - 128, 65504, 65519, 65520, 65535}
    vals |= {-(2**24) - 1, -65520, -65519, 1000, -1000, 0x5A5A5A5A, 0x12345678}
    return np.unique(np.array([v & MASK[t] for v in vals], np.uint64)).astype(np.uint32)


def _conversion_boundaries() -> list[float]:
    out = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 0.49999997, 0.50000006, 1e-3, 0.1, 1 / 3, 2 / 3]
    for lo, hi in INT_RANGE.values():
        out += [lo - 1, lo - 0.5, lo, lo + 0.5, hi - 0.5, hi, hi + 0.5, hi + 1]
    return out


F32_SPECIAL = [
    0x00000000, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FBFFFFF, 0x7FA12345, 0x7FFFFFFF, 0x7FD00BAD,
    0x00000001, 0x007FFFFF, 0x00400000, 0x00000ABC, 0x00800000, 0x00800001, 0x00FFFFFF, 0x01000000,
    0x7F7FFFFF, 0x7F000000, 0x7E800000, 0x3F800000, 0x3F000000, 0x3F800001, 0x3F7FFFFF, 0x40000000,
    0x4F000000, 0x4EFFFFFF, 0x4F000001, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x47800000,
    0x33000000, 0x33000001, 0x33800000, 0x33C00000, 0x34000000, 0x387FC000, 0x38800000, 0x387FFFFF,
    0x3F801000, 0x3F803000, 0x3F802000, 0x3F801001, 0x42B17218, 0x42B17217, 0xC2AEAC50, 0x42B80000,
    0xC2DC0000, 0x3F100000, 0x39800000, 0x41800000, 0x41100000, 0x1F800000, 0x20000000, 0x5F000000,
    0x5F800000, 0x2B800000, 0x4B800000, 0x4B800001, 0x4B000000, 0x3EFFFFFF,
]  # fmt: skip


def _f32_pool() -> np.ndarray:
    b = np.concatenate([np.array(F32_SPECIAL, np.uint32), _f32_bits(_conversion_boundaries())])
    near = (b[:, None].astype(np.int64) + np.array([-1, 0, 1])).ravel() & 0x7FFFFFFF
    near = np.concatenate([near, near | 0x80000000]).astype(np.uint32)
    return np.unique(near)


def _f16_pool() -> np.ndarray:
    special = [0x0000, 0x0001, 0x0002, 0x0003, 0x01FF, 0x0200, 0x03FF, 0x0400, 0x0401, 0x07FF, 0x3BFF, 0x3C00]
    special += [0x3C01, 0x7BFF, 0x7BFE, 0x7C00, 0x7C01, 0x7D55, 0x7E00, 0x7E01, 0x7FFF, 0x4900, 0x4980, 0x4A00]
    vals = [0.5, 1.5, 2.5, 3.5, 126.5, 127, 127.5, 128, 128.5, 254.5, 255, 255.5, 256, 1000, 32767, 32768, 65504]
    vals += [2.0**-14, 2.0**-24, 3 * 2.0**-24, 0.1, 1 / 3, 10.0, 11.0, 11.09, 11.5, 0.5625, 9.0, 16.0, 2048, 2049]
    b = np.concatenate([np.array(special, np.uint32), np.asarray(vals, np.float16).view(np.uint16)]).astype(np.uint32)
    return np.unique(np.concatenate([b, b | 0x8000]))


POOL = {t: _int_pool(t) for t in INTS} | {"f32": _f32_pool(), "f16": _f16_pool()}
SCALES = np.unique(
    np.concatenate(
        [
            _f32_bits([2.0**-k for k in range(0, 34)] + [0.5, 0.75, 1 / 3, 1e-10, 1e10, 3.0, 127.0, 1.5e-5]),
            np.array(
                [0x00000001, 0x007FFFFF, 0x00800000, 0x7F800000, 0x7FC00000, 0x7FA00001, 0x7F7FFFFF, 0], np.uint32
            ),
        ]
    )
)
SCALES = np.concatenate([SCALES, SCALES | np.uint32(0x80000000)])


def _garbage(rng, x: np.ndarray, t: str) -> np.ndarray:
    """Fill the bits above t's width with random junk on about half of the lanes."""
    junk = rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32) & np.uint32(~MASK[t] & 0xFFFFFFFF)
    return np.where(rng.random(x.shape) < 0.5, x | junk, x).astype(np.uint32)


def gen(rng, t: str, n: int, kind: str = "value") -> np.ndarray:
    """n operand bit patterns of type t: pool values, random bits and 'moderate' values. kind: value, shift, scale."""
    rbits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    if kind == "shift":
        nb = 8 * WIDTH[t]
        amounts = np.array([0, 1, nb - 2, nb - 1, nb, nb + 1, 2 * nb, 255, 256, 2**31, MASK[t], MASK[t] - 1], np.uint64)
        x = np.where(
            rng.random(n) < 0.5, rng.integers(0, nb + 3, n), rng.choice(np.concatenate([amounts, rbits[:8]]), n)
        ).astype(np.uint64)
        return _garbage(rng, (x & MASK[t]).astype(np.uint32), t)
    if kind == "scale":
        mod = (np.float32(2.0) ** rng.uniform(-40, 8, n).astype(np.float32)).astype(np.float32)
        mod = np.where(rng.random(n) < 0.2, -mod, mod).view(np.uint32)
        return np.where(rng.random(n) < 0.5, rng.choice(SCALES, n), np.where(rng.random(n) < 0.9, mod, rbits))
    pick = rng.random(n)
    if t in INTS:
        lo, hi = INT_RANGE[t]
        mod = (rng.integers(-300, 301, n) & MASK[t]).astype(np.uint32)
        x = np.where(pick < 0.4, rng.choice(POOL[t], n), np.where(pick < 0.7, rbits & np.uint32(MASK[t]), mod))
    elif t == "f32":
        mags = np.exp(rng.uniform(-95, 95, n)) * rng.choice([-1.0, 1.0], n)
        halves = rng.integers(-70000, 70000, n) / 2
        with np.errstate(over="ignore"):
            mod = np.where(rng.random(n) < 0.5, mags, halves).astype(np.float32).view(np.uint32)
        x = np.where(pick < 0.4, rng.choice(POOL[t], n), np.where(pick < 0.7, rbits, mod))
    else:
        mod = (rng.uniform(-12, 12, n) * np.exp(rng.uniform(-18, 8, n))).astype(np.float16).view(np.uint16)
        x = np.where(pick < 0.4, rng.choice(POOL[t], n), np.where(pick < 0.7, rbits & 0xFFFF, mod.astype(np.uint32)))
    return _garbage(rng, x.astype(np.uint32), t)


def operands(rng, op: str, t1: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random a, b, c for one (op, t1): b correlated with a on some lanes (ties, -x), shift amounts, scales."""
    a = gen(rng, t1, n)
    if op in SHIFTS:
        return a, gen(rng, t1, n, "shift"), gen(rng, t1, n)
    if op == "requant":
        return a, gen(rng, t1, n, "scale"), gen(rng, t1, n)
    b = gen(rng, t1, n)
    sign = np.uint32(1 << (8 * WIDTH[t1] - 1))
    r = rng.random(n)
    b = np.where(r < 0.12, a, np.where(r < 0.2, a ^ sign, b)).astype(np.uint32)
    c = gen(rng, t1, n)
    if op == "select":  # A = 0 (within the width, high junk or not) on a good share of lanes
        a = np.where(rng.random(n) < 0.4, a & np.uint32(~MASK[t1] & 0xFFFFFFFF), a).astype(np.uint32)
    return a, b, c


def _cross(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(x, len(y)).astype(np.uint32), np.tile(y, len(x)).astype(np.uint32)


# --------------------------------------------------------------------------- the tests
def test_dtype_codes_and_op_table_as_specified():
    assert {d.name: (d.code, d.width) for d in DTYPES} == {t: (i, WIDTH[t]) for i, t in enumerate(ALL_TYPES)}
    assert len(COMBOS) == 169 and len(set(COMBOS)) == len(COMBOS)
    assert {op for op, _, _ in COMBOS} == set(isa.VXM_OPS)


def test_every_op_and_dtype_random():
    """Every (op, dtype) incl. every convert pair and requant, 2 rows of random operands each, 16 combos a call."""
    rng = np.random.default_rng(1)
    cases = []
    for op, t1, t2 in COMBOS:
        a, b, c = operands(rng, op, t1, 2 * L)
        cases.append((op, t1, t2, a, b, c))
    order = rng.permutation(len(cases))  # mix the combos that share a call
    assert_cases([cases[i] for i in order])


def test_8bit_exhaustive():
    """All 65536 (a, b) pairs of i8 and u8 for every two-operand op; all 256 values (x 16 junk fills) unary."""
    rng = np.random.default_rng(2)
    cases = []
    v = np.arange(256, dtype=np.uint32)
    pa, pb = _cross(v, v)
    for t in ("i8", "u8"):
        for op, t1, t2 in COMBOS:
            if t1 != t:
                continue
            arity = isa.VXM_OPS[op][1]
            if arity >= 2:
                a, b = _garbage(rng, pa, t), _garbage(rng, pb, t)
                c = _garbage(rng, np.roll(pb, 12345), t)
            else:
                a = _garbage(rng, np.tile(v, 16), t)
                b, c = gen(rng, t, len(a)), gen(rng, t, len(a))
            cases.append((op, t1, t2, a, b, c))
    assert_cases(cases)


def test_fp16_unary_exhaustive():
    """All 65536 fp16 bit patterns through every one-operand op on f16 and every convert from f16."""
    rng = np.random.default_rng(3)
    h = _garbage(rng, np.arange(2**16, dtype=np.uint32), "f16")
    cases = [
        (op, t1, t2, h, gen(rng, "f16", len(h)), gen(rng, "f16", len(h)))
        for op, t1, t2 in COMBOS
        if t1 == "f16" and isa.VXM_OPS[op][1] == 1
    ]
    assert_cases(cases)


def test_i16_conversions_exhaustive():
    rng = np.random.default_rng(4)
    x = _garbage(rng, np.arange(2**16, dtype=np.uint32), "i16")
    z = np.zeros_like(x)
    assert_cases([("convert", "i16", t2, x, z, z) for t2 in ALL_TYPES])


def test_special_value_cross_products():
    """Pool x pool for every two- and three-operand op, the pool for every one-operand op (i16/i32/f16/f32 pools
    of extremes and specials; i8/u8 are exhaustive above)."""
    rng = np.random.default_rng(5)
    cases = []
    for op, t1, t2 in COMBOS:
        if op == "requant" or t1 in ("i8", "u8"):
            continue
        pool = POOL[t1]
        if isa.VXM_OPS[op][1] == 1:
            a = np.tile(pool, 2)
            b = rng.choice(pool, len(a))
        elif op in SHIFTS:
            nb = 8 * WIDTH[t1]
            amounts = np.array([0, 1, nb - 1, nb, nb + 1, 255, 256, 2**31, MASK[t1], MASK[t1] - 1, MASK[t1] // 2])
            a, b = _cross(pool, np.concatenate([np.arange(nb + 2), amounts & MASK[t1]]).astype(np.uint32))
        else:
            a, b = _cross(pool, pool)
        c = rng.choice(pool, len(a))
        cases.append((op, t1, t2, _garbage(rng, a, t1), _garbage(rng, b, t1), _garbage(rng, c, t1)))
    assert_cases(cases)


def test_conversions_boundaries():
    """Every convert pair on its source pool plus dense neighbourhoods of the float -> int saturation boundaries,
    the round-half-even ties and the fp16 overflow / subnormal boundaries."""
    rng = np.random.default_rng(6)
    targets = _f32_bits(_conversion_boundaries() + [65504.0, 65520.0, 2.0**-14, 2.0**-24, 2.0**-25, 3 * 2.0**-25])
    dense = (targets[:, None].astype(np.int64) + np.arange(-40, 41)).ravel() & 0xFFFFFFFF
    ties = np.arange(-70000, 70000, dtype=np.float64) + 0.5  # k + 1/2: exact in fp32 below 2^23
    sub_ties = (np.arange(0, 1100) + 0.5) * 2.0**-24  # fp16 subnormal ties
    f32 = np.concatenate([POOL["f32"], dense.astype(np.uint32), _f32_bits(ties), _f32_bits(sub_ties)])
    f32 = np.concatenate([f32, f32 ^ np.uint32(0x80000000)])
    big_i32 = np.array([2**24 + k for k in range(-9, 9)] + [2**31 - 1 - k for k in range(300)], np.int64)
    i32 = np.concatenate([POOL["i32"], (np.concatenate([big_i32, -big_i32]) & 0xFFFFFFFF).astype(np.uint32)])
    src = {"f32": f32, "i32": i32, "f16": POOL["f16"], "i8": POOL["i8"], "u8": POOL["u8"], "i16": POOL["i16"]}
    cases = []
    for t1 in ALL_TYPES:
        x = _garbage(rng, src[t1], t1)
        for t2 in ALL_TYPES:
            cases.append(("convert", t1, t2, x, gen(rng, t1, len(x)), gen(rng, t1, len(x))))
    assert_cases(cases)


def test_requant_cross_products():
    rng = np.random.default_rng(7)
    a, b = _cross(POOL["i32"], SCALES)
    a2 = rng.integers(-(2**31), 2**31, 2 * L).astype(np.int64) & 0xFFFFFFFF
    ties = rng.integers(-300, 300, 2 * L) | 1  # odd A times 0.5: exact halves
    a = np.concatenate([a, a2.astype(np.uint32), (ties & 0xFFFFFFFF).astype(np.uint32)])
    b = np.concatenate([b, gen(rng, "f32", 2 * L, "scale"), np.full(2 * L, 0x3F000000, np.uint32)])
    assert_cases([("requant", "i32", "i8", a, b, gen(rng, "i32", len(a)))])


# Hand-computed answers (from the spec text, independent of both the reference and the model).
F = lambda v: int(_f32_bits(v))  # noqa: E731
H = lambda v: int(np.float16(v).view(np.uint16))  # noqa: E731
KNOWN = [
    # op, t1, t2, a, b, c, expected bits
    ("add", "i8", "i8", 0x7F, 0x01, 0, 0x80),
    ("add", "u8", "u8", 0xFF, 0x01, 0, 0x00),
    ("add", "i8", "i8", 0xFFFFFF7F, 0xABCDEF01, 0, 0x80),  # junk above the width is ignored
    ("sub", "i16", "i16", 0x8000, 0x0001, 0, 0x7FFF),
    ("mul", "i32", "i32", 0x10000, 0x10000, 0, 0),
    ("mul", "i8", "i8", 0x80, 0xFF, 0, 0x80),  # -128 * -1 wraps
    ("shl", "i16", "i16", 1, 16, 0, 0),
    ("shl", "i8", "i8", 0x81, 1, 0, 0x02),
    ("shr", "i8", "i8", 0x80, 9, 0, 0xFF),  # amount >= width: sign fill
    ("shr", "i8", "i8", 0x80, 0xFF, 0, 0xFF),  # "negative" amount read as unsigned 255
    ("shr", "i8", "i8", 0x40, 0xFF, 0, 0x00),
    ("shr", "u8", "u8", 0x80, 1, 0, 0x40),  # logical for u8
    ("shr", "i32", "i32", 0x80000000, 31, 0, 0xFFFFFFFF),
    ("shru", "i32", "i32", 0x80000000, 0xFFFFFFFF, 0, 0),
    ("shru", "i16", "i16", 0x8000, 15, 0, 1),
    ("abs", "i8", "i8", 0x80, 0, 0, 0x80),
    ("neg", "u8", "u8", 1, 0, 0, 0xFF),
    ("relu", "i16", "i16", 0x8000, 0, 0, 0),
    ("not", "i16", "i16", 0x00FF, 0, 0, 0xFF00),
    ("lt", "u8", "u8", 0x80, 0x7F, 0, 0),
    ("lt", "i8", "i8", 0x80, 0x7F, 0, 1),
    ("min", "u8", "u8", 0x80, 0x7F, 0, 0x7F),
    ("max", "i32", "i32", 0x80000000, 0x7FFFFFFF, 0, 0x7FFFFFFF),
    ("select", "i8", "i8", 0x100, 0x11, 0x22, 0x22),  # A has bits only above the width: C
    ("select", "f32", "f32", 0x80000000, 0x11, 0x22, 0x11),  # -0.0 has a bit set: B
    ("eq", "f32", "f32", 0x00000000, 0x80000000, 0, 1),
    ("eq", "f32", "f32", 0x00000001, 0x00000000, 0, 1),  # subnormal flushed
    ("eq", "f32", "f32", 0x7FC00000, 0x7FC00000, 0, 0),
    ("ne", "f32", "f32", 0x7FC00000, 0x7FC00000, 0, 1),
    ("ge", "f16", "f16", 0x7E00, 0x3C00, 0, 0),
    ("gt", "f16", "f16", 0x0001, 0x0000, 0, 1),  # fp16 subnormals are not flushed
    ("min", "f32", "f32", 0x00000000, 0x80000000, 0, 0x80000000),
    ("max", "f32", "f32", 0x80000000, 0x00000000, 0, 0x00000000),
    ("max", "f32", "f32", 0x7FA12345, F(1.0), 0, 0x7FC00000),
    ("min", "f16", "f16", 0x8000, 0x0000, 0, 0x8000),
    ("add", "f32", "f32", 0x7F800000, 0xFF800000, 0, 0x7FC00000),
    ("mul", "f32", "f32", 0x00000000, 0xFF800000, 0, 0x7FC00000),
    ("mul", "f32", "f32", F(1e-30), F(1e-9), 0, 0),  # subnormal result flushed
    ("mul", "f32", "f32", 0x80800000, F(0.5), 0, 0x80000000),  # -2^-127 flushed to -0
    ("add", "f32", "f32", 0x00000001, F(1.0), 0, F(1.0)),
    ("add", "f16", "f16", 0x0001, 0x0001, 0, 0x0002),
    ("add", "f16", "f16", H(65504), H(8), 0, 0x7BFF),  # 65512 rounds down to the largest finite fp16
    ("add", "f16", "f16", H(65504), H(16), 0, 0x7C00),  # 65520: the tie, to even = 2^16: inf
    ("neg", "f32", "f32", 0xFFC00001, 0, 0, 0x7FC00000),  # canonical NaN, positive
    ("neg", "f32", "f32", 0x00000000, 0, 0, 0x80000000),
    ("abs", "f16", "f16", 0xFE01, 0, 0, 0x7E00),
    ("relu", "f32", "f32", 0x80000000, 0, 0, 0),
    ("relu", "f16", "f16", 0xFC01, 0, 0, 0x7E00),
    ("mov", "f32", "f32", 0x7FA12345, 0, 0, 0x7FA12345),  # mov copies bits: no canonicalisation, no flush
    ("mov", "f32", "f32", 0x80000001, 0, 0, 0x80000001),
    ("mov", "f16", "f16", 0xABCD7D55, 0, 0, 0x7D55),
    ("exp", "f32", "f32", 0, 0, 0, F(1.0)),
    ("exp", "f32", "f32", 0xFF800000, 0, 0, 0),
    ("exp", "f32", "f32", 0xFFC00001, 0, 0, 0x7FC00000),
    ("exp", "f16", "f16", H(12.0), 0, 0, 0x7C00),  # e^12 > 65504
    ("tanh", "f32", "f32", 0x80000000, 0, 0, 0x80000000),
    ("tanh", "f32", "f32", F(-20.0), 0, 0, F(-1.0)),
    ("rsqrt", "f32", "f32", F(-1.0), 0, 0, 0x7FC00000),
    ("rsqrt", "f32", "f32", F(4.0), 0, 0, F(0.5)),
    ("rsqrt", "f32", "f32", 0x80000001, 0, 0, 0xFF800000),  # -subnormal -> -0 -> -inf
    ("recip", "f32", "f32", 0x80000000, 0, 0, 0xFF800000),
    ("recip", "f32", "f32", F(2.0**127), 0, 0, 0),  # 2^-127 flushed
    ("recip", "f16", "f16", 0x0001, 0, 0, 0x7C00),  # 2^24 overflows fp16
    ("recip", "f16", "f16", H(4.0), 0, 0, H(0.25)),
    ("convert", "f16", "f32", 0x0001, 0, 0, F(2.0**-24)),
    ("convert", "f16", "f32", 0xFD55, 0, 0, 0x7FC00000),
    ("convert", "f32", "f16", 0x00000001, 0, 0, 0),
    ("convert", "f32", "f16", F(2.0**-25), 0, 0, 0),  # tie with 0: even
    ("convert", "f32", "f16", F(3 * 2.0**-25), 0, 0, 2),  # tie 1.5 units: to 2
    ("convert", "f32", "f16", F(65520.0), 0, 0, 0x7C00),
    ("convert", "f32", "f16", F(65519.99), 0, 0, 0x7BFF),
    ("convert", "f32", "f32", 0x807FFFFF, 0, 0, 0x80000000),
    ("convert", "f32", "i32", 0x4F000000, 0, 0, 0x7FFFFFFF),  # 2^31 saturates
    ("convert", "f32", "i32", 0xCF000000, 0, 0, 0x80000000),
    ("convert", "f32", "i32", 0x7FC00000, 0, 0, 0),
    ("convert", "f32", "i32", 0xFF800000, 0, 0, 0x80000000),
    ("convert", "f32", "i8", F(2.5), 0, 0, 2),
    ("convert", "f32", "i8", F(3.5), 0, 0, 4),
    ("convert", "f32", "i8", F(-0.5), 0, 0, 0),
    ("convert", "f32", "i8", F(-128.5), 0, 0, 0x80),
    ("convert", "f32", "i8", F(127.5), 0, 0, 0x7F),
    ("convert", "f32", "u8", F(-1.0), 0, 0, 0),
    ("convert", "f32", "u8", F(254.5), 0, 0, 254),
    ("convert", "f32", "u8", F(255.5), 0, 0, 255),
    ("convert", "f16", "i16", 0x7C00, 0, 0, 0x7FFF),
    ("convert", "f16", "u8", H(2.5), 0, 0, 2),
    ("convert", "i32", "u8", 0xFFFFFFFF, 0, 0, 0),
    ("convert", "i32", "i16", 70000, 0, 0, 0x7FFF),
    ("convert", "u8", "i8", 200, 0, 0, 0x7F),
    ("convert", "i8", "u8", 0xFF, 0, 0, 0),
    ("convert", "i8", "i32", 0x80, 0, 0, 0xFFFFFF80),
    ("convert", "u8", "i16", 0xFF, 0, 0, 0x00FF),
    ("convert", "i32", "f32", 2**24 + 1, 0, 0, 0x4B800000),  # tie: to even
    ("convert", "i32", "f32", 2**24 + 3, 0, 0, 0x4B800002),
    ("convert", "i32", "f32", 0x7FFFFFFF, 0, 0, 0x4F000000),
    ("convert", "i32", "f16", 65520, 0, 0, 0x7C00),
    ("convert", "i32", "f16", 65519, 0, 0, 0x7BFF),
    ("convert", "i16", "f16", 2049, 0, 0, H(2048.0)),  # tie: to even
    ("convert", "i8", "f16", 0x80, 0, 0, H(-128.0)),
    ("requant", "i32", "i8", 3, F(0.5), 0, 2),  # 1.5 -> 2
    ("requant", "i32", "i8", 5, F(0.5), 0, 2),  # 2.5 -> 2
    ("requant", "i32", "i8", 0xFFFFFFFB, F(0.5), 0, 0xFE),  # -2.5 -> -2
    ("requant", "i32", "i8", 1000, F(1.0), 0, 0x7F),
    ("requant", "i32", "i8", 0xFFFFFC18, F(1.0), 0, 0x80),
    ("requant", "i32", "i8", 7, 0x7FC00000, 0, 0),
    ("requant", "i32", "i8", 0, 0x7F800000, 0, 0),  # 0 * inf = NaN -> 0
    ("requant", "i32", "i8", 1, 0xFF800000, 0, 0x80),
    ("requant", "i32", "i8", 0x7FFFFFFF, F(2.0**-24), 0, 0x7F),  # f32(A) rounds to 2^31: 128 -> 127
]


@pytest.mark.parametrize("impl", ["reference", "model"])
def test_known_answers(impl):
    u = lambda v: np.array([v], np.uint32)  # noqa: E731
    if impl == "reference":
        got = [int(ref_vxm(op, t1, t2, u(a), u(b), u(c))[0][0]) for op, t1, t2, a, b, c, _ in KNOWN]
    else:
        cases = [(op, t1, t2, u(a), u(b), u(c)) for op, t1, t2, a, b, c, _ in KNOWN]
        got = [int(g[0]) for g, _ in run_cases(cases)]
    bad = [(k[:3], _hex(k[3]), _hex(k[4]), _hex(g), _hex(k[6])) for k, g in zip(KNOWN, got) if g != k[6]]
    assert not bad, bad


def test_inactive_rows_do_not_disturb_active_ones():
    """`active` masks rows: the transcendentals run only for active rows that need them; active rows are exact."""
    rng = np.random.default_rng(8)
    picks = [COMBOS[i] for i in rng.choice(len(COMBOS), A, replace=False)]
    picks[0] = ("exp", "f32", "f32")
    picks[1] = ("tanh", "f16", "f16")
    rows = [(op, t1, t2, *operands(rng, op, t1, L)) for op, t1, t2 in picks]
    active = np.arange(A) % 3 != 1
    bits, t_out = _run_rows(rows, active)
    for i, (op, t1, t2, a, b, c) in enumerate(rows):
        if active[i]:
            want, tw = ref_vxm(op, t1, t2, a, b, c)
            assert t_out[i] == CODE[tw]
            np.testing.assert_array_equal(bits[i], want, err_msg=f"{op}.{t1}.{t2}")


# --------------------------------------------------------------------------- hypothesis: batches of 16 combos
def _elements(t: str):
    if t in INTS:
        lo, hi = INT_RANGE[t]
        v = st.one_of(st.sampled_from(sorted(int(x) for x in POOL[t])), st.integers(lo, hi))
    elif t == "f32":
        v = st.one_of(
            st.sampled_from(sorted(int(x) for x in POOL[t])),
            st.integers(0, 2**32 - 1),
            st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True).map(
                lambda f: int(_f32_bits(f))
            ),
        )
    else:
        v = st.one_of(
            st.sampled_from(sorted(int(x) for x in POOL[t])),
            st.integers(0, 0xFFFF),
            st.floats(width=16).map(lambda f: int(np.float16(f).view(np.uint16))),
        )
    junk = st.one_of(st.just(0), st.integers(0, 2**32 - 1))
    return st.tuples(v, junk).map(lambda p: ((p[0] & MASK[t]) | (p[1] & ~MASK[t])) & 0xFFFFFFFF)


@st.composite
def batches(draw):
    combos = draw(st.lists(st.sampled_from(COMBOS), min_size=A, max_size=A, unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    rows = []
    rng = np.random.default_rng(seed)
    for op, t1, t2 in combos:
        a, b, c = operands(rng, op, t1, L)
        # hypothesis-chosen lanes at the start of the row
        xa = draw(st.lists(_elements(t1), max_size=12))
        a[: len(xa)] = xa
        if op not in SHIFTS and op != "requant":
            xb = draw(st.lists(_elements(t1), max_size=12))
            b[: len(xb)] = xb
        rows.append((op, t1, t2, a, b, c))
    return rows


HYP = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=12, **HYP)
@given(batches())
def test_hypothesis_batches_of_16_different_ops(rows):
    _check_batch(rows)


@pytest.mark.slow
@settings(max_examples=40, **HYP)
@given(batches())
def test_hypothesis_batches_of_16_different_ops_more_examples(rows):
    """The sweep above with 40 batches (the default run draws 12)."""
    _check_batch(rows)


def _check_batch(rows):
    bits, t_out = _run_rows(rows)
    for i, (op, t1, t2, a, b, c) in enumerate(rows):
        want, tw = ref_vxm(op, t1, t2, a, b, c)
        assert t_out[i] == CODE[tw], (op, t1, t2)
        bad = bits[i] != want
        j = np.flatnonzero(bad)[:3]
        assert not bad.any(), (op, t1, t2, [(_hex(a[k]), _hex(b[k]), _hex(bits[i][k]), _hex(want[k])) for k in j])


# --------------------------------------------------------------------------- mul.f32 at the underflow boundary
def test_mul_f32_underflow_boundary():
    """IEEE rounding, not the backend's flush-to-zero, decides whether a tiny product becomes 2^-126 or 0.

    (XLA CPU's FTZ flushed products just below 2^-126 that round up to it, e.g. 0x2180376D * 0x1E7F9155; fixed in
    dc42668 by fpmath.mul_f32.) Exact ties: (2^24 - 1) 2^-150 is halfway between 0x007FFFFF and 0x00800000 and
    rounds to the even 2^-126; (2^24 - 3) 2^-150 rounds to the even subnormal 0x007FFFFE, flushed to +0;
    (2^25 - 1) 2^-151 is above the midpoint: 2^-126. Dense lanes around the boundary go against the reference."""
    f = lambda m, e: int(_f32_bits(np.ldexp(np.float64(m), e)))  # noqa: E731
    a = [0x2180376D, 0x21FCCF19, 0xA182DF22, f(315, -70), f(16777213, -75), f(18631, -75), f(315, -70)]
    b = [0x1E7F9155, 0x1E019D9B, 0x1E7A61FE, f(53261, -80), f(1, -75), f(1801, -76), f(-53261, -80)]
    want = [0x00800000, 0x00800000, 0x80800000, 0x00800000, 0x00000000, 0x00800000, 0x80800000]
    ((got, _),) = run_cases([("mul", "f32", "f32", np.array(a, np.uint32), np.array(b, np.uint32), np.zeros(7))])
    assert [_hex(g) for g in got] == [_hex(w) for w in want]
    rng = np.random.default_rng(10)
    n = 8 * L
    x = (rng.uniform(1, 2, n) * 2.0 ** rng.integers(-100, -26, n)).astype(np.float32)
    target = 2.0**-126 * (1 + rng.uniform(-2, 2, n) * 2.0**-23)
    y = (target / x.astype(np.float64)).astype(np.float32).view(np.uint32).astype(np.int64)
    y = (y + rng.integers(-2, 3, n)) | (rng.integers(0, 2, n) << 31)  # a few ulps either side, both signs
    x = x.view(np.uint32) | (rng.integers(0, 2, n) << 31).astype(np.uint32)
    xb, yb = x.astype(np.uint32), (y & 0xFFFFFFFF).astype(np.uint32)
    want, _ = ref_vxm("mul", "f32", "f32", xb, yb, xb)
    assert np.sum(want & 0x7FFFFFFF == 0x00800000) > n // 8 and np.sum(want & 0x7FFFFFFF == 0) > n // 8
    assert_cases([("mul", "f32", "f32", xb, yb, xb), ("mul", "f32", "f32", yb, xb, xb)])


# --------------------------------------------------------------------------- end to end through the simulator
def test_end_to_end_add_i8_on_tiny():
    """Read i8 vectors from W0 (eastward) and E0 (westward), add.i8 on VXM.0, Write the sums to E1.

    tiny(): slices MXM MXM SXM W1 W0 VXM E0 E1 SXM MXM MXM at positions 0..10, so pW0 = 4, pV = 5, pE0 = 6,
    pE1 = 7 (checked below from cfg). With dR = d(Read) = 2, dI = d(vxm.int) = 1 and vector i = 0..n-1:
      Read W0 addr i on E0 issued at i: on E0 at pW0 at i + dR, at the VXM at i + dR + (pV - pW0) = i + 3;
      Read E0 addr i on W1 issued at i: on W1 at pE0 at i + dR, at the VXM at i + dR + (pE0 - pV) = i + 3;
      add.i8 E2, E0, W1 issued at T + i, T = dR + 1 = 3: reads both there and then; the sum lands on E2 at pV at
      T + i + dI = i + 4 and is at pE1 at i + 4 + (pE1 - pV) = i + 6;
      Write E1 addr 8 + i from E2 issued at i + 6; it commits at i + 6 + d(Write) = i + 7. Run n + 7 + 2 cycles.
    """
    cfg = lpu_jax.tiny()
    pos = {name: int(cfg.positions[cfg.mem_slices[i]]) for i, name in enumerate(cfg.mem_names)}
    pV = int(cfg.positions[cfg.vxm_slice])
    assert (pos["W0"], pV, pos["E0"], pos["E1"]) == (4, 5, 6, 7)
    dR, dI, dW = cfg.delay("Read"), cfg.delay("vxm.int"), cfg.delay("Write")
    n = 4
    T = dR + (pV - pos["W0"])  # both operands reach the VXM at T + i (the two hops are equal)
    assert T == dR + (pos["E0"] - pV) == 3
    t_write = T + dI + (pos["E1"] - pV)
    assert t_write == 6
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (n, cfg.n_lanes)).astype(np.int8)
    y = rng.integers(-128, 128, (n, cfg.n_lanes)).astype(np.int8)
    x[0, :4], y[0, :4] = [127, -128, -1, 100], [1, -1, 1, 100]  # wrap-around lanes
    mem = np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)
    mem[cfg.mem_names.index("W0"), :n] = x.view(np.uint8)
    mem[cfg.mem_names.index("E0"), :n] = y.view(np.uint8)
    rep = lambda stride: [Instruction("Repeat", (n - 1, 1, stride))]  # noqa: E731
    prog = lpu_jax.Program(
        {
            "MEM.W0": [Instruction("Read", (0, E(0)))] + rep(1),
            "MEM.E0": [Instruction("Read", (0, W(1)))] + rep(1),
            "VXM.0": [Instruction("NOP", (T,)), Instruction("add.i8", (E(2), E(0), W(1)))] + rep(0),
            "MEM.E1": [Instruction("NOP", (t_write,)), Instruction("Write", (8, E(2)))] + rep(1),
        }
    )
    state, _ = lpu_jax.run(cfg, prog, lpu_jax.init_state(cfg, mem), t_write + n + dW + 2, trace=TRACE)
    img = lpu_jax.mem_image(cfg, state)
    want = mem.copy()
    with np.errstate(over="ignore"):
        want[cfg.mem_names.index("E1"), 8 : 8 + n] = (x + y).view(np.uint8)  # int8 wrapping addition
    np.testing.assert_array_equal(img, want)
    assert int(np.asarray(state.hazards.count).sum()) == 0

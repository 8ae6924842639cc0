"""Tests for lpu_jax.reference.chipnum, the plain-numpy evaluator of jaxprs with the chip's numerics.

* chipnum's element-wise functions against `lpu_jax.fpmath` (the jax implementation of docs/fpmath.md) bit for bit,
  on hypothesis-drawn fp32 bit patterns, a large fixed sample and dense ranges around every branch point;
* `lane_sum` against a brute-force model of the chip's shift-and-add reduction, and proof that the order matters;
* `evaluate` / `run` on small models against jax (floats within a tolerance, int8 matmuls exactly), the two-rounding
  division, the fp16 matmul against exact `Fraction` arithmetic, gather and the structural primitives exactly;
* unsupported primitives name themselves and the user's source line.
Bits are compared through `.view(np.uint32)`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import f32_bit_arrays, f32_bit_sample

from lpu_jax import fpmath as F

CHIPNUM_PATH = Path(__file__).resolve().parents[1] / "lpu_jax" / "reference" / "chipnum.py"


def _load_chipnum():
    """`lpu_jax.reference.chipnum`; loaded from its file if the package's __init__ cannot be imported (it pulls
    in the flax models and the MiniLM loader, which chipnum does not need)."""
    try:
        return importlib.import_module("lpu_jax.reference.chipnum")
    except ImportError:
        spec = importlib.util.spec_from_file_location("_chipnum_under_test", CHIPNUM_PATH)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


C = _load_chipnum()

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_HYP = 256  # fixed array length for hypothesis examples, so each jitted fpmath function compiles once


# --------------------------------------------------------------------------- helpers
def u32(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def f32(b) -> np.ndarray:
    return np.asarray(b, np.uint32).view(np.float32)


def assert_bits_equal(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    view = {4: np.uint32, 2: np.uint16, 1: np.uint8}[got.dtype.itemsize]
    g, w = got.view(view), want.view(view)
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, (
        f"{what}: {bad.size} mismatches, first at {bad[:5]}: got {g.ravel()[bad[:5]]} want {w.ravel()[bad[:5]]}"
    )


def _vxm_add_sub(op):
    """The VXM's fp32 add/sub (lpu_jax/vxm.py): flushed inputs, IEEE op, flushed result, +canonical NaN."""

    def f(a, b):
        r = F.flush_f32(op(F.flush_f32(a), F.flush_f32(b)))
        return jnp.where(F.is_nan_f32(r), F.canonical_nan_f32(False), r)

    return jax.jit(f)


REF_UNARY = {
    "flush": jax.jit(F.flush_f32),
    "exp": jax.jit(F.exp_f32),
    "tanh": jax.jit(F.tanh_f32),
    "rsqrt": jax.jit(F.rsqrt_f32),
    "recip": jax.jit(F.recip_f32),
    "f32_to_f16": jax.jit(F.f32_to_f16),
    "to_int8_sat": jax.jit(lambda x: F.f32_to_int(x, 8)),
}
REF_BINARY = {
    "mul": jax.jit(F.mul_f32),
    "max_": jax.jit(F.max_f32),
    "min_": jax.jit(F.min_f32),
    "add": _vxm_add_sub(jnp.add),
    "sub": _vxm_add_sub(jnp.subtract),
}

SPECIAL = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
    0x7FBFFFFF, 0xFFFFFFFF, 0x7FA12345, 0xFFD00BAD, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,
    0x00400000, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000, 0x3F000000,
    0x7E800000, 0x7E800001, 0xFE800001, 0x477FEFFF, 0x477FF000, 0x33000000, 0x33000001, 0x387FC000,
]  # fmt: skip
# branch points: exp clamps / overflow / underflow / |r| < 2^-40, tanh 2^-12, 0.5625, 16, fp16 limits, int8 limits
BRANCHES = [
    0x42B80000, 0xC2DC0000, 0x42B17218, 0xC2AEAC50, 0x2B800000, 0x39800000, 0x3F100000, 0x41800000,
    0x41100000, 0x477FE000, 0x38800000, 0x33800000, 0x42FE0000, 0x43000000, 0xC3010000, 0x3F000000,
]  # fmt: skip


F32 = f32_bit_arrays(SPECIAL, BRANCHES, N_HYP, spread=64, span=130.0)
SAMPLE = f32_bit_sample(60_000, 1, SPECIAL, BRANCHES, spread=3000, exp_hi=12)


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Operand pairs for the two-input functions: random, equal (+-0 included), special, and products near 2^-126."""
    rng = np.random.default_rng(seed)
    a = SAMPLE[rng.integers(0, SAMPLE.size, n)]
    b = SAMPLE[rng.integers(0, SAMPLE.size, n)]
    eq = a[: n // 8].copy()
    sp = f32(np.array(SPECIAL, np.uint32))
    sa, sb = np.repeat(sp, sp.size), np.tile(sp, sp.size)
    m = rng.uniform(1, 2, n // 4).astype(np.float32) * np.float32(2.0) ** rng.integers(-60, 60, n // 4).astype(
        np.float32
    )
    near = u32((np.float64(2.0**-126) / m.astype(np.float64)).astype(np.float32)).astype(np.int64)
    near = f32((near + rng.integers(-3, 4, near.size)).astype(np.uint32))
    return np.concatenate([a, eq, sa, m, -m]), np.concatenate([b, eq, sb, near, near])


PAIR_A, PAIR_B = _pairs(40_000, 2)


# --------------------------------------------------------------------------- independence
def test_chipnum_imports_only_numpy_jax_and_the_standard_library():
    tree = ast.parse(CHIPNUM_PATH.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in chipnum: {ast.dump(node)}"
            roots.add(node.module.split(".")[0])
    foreign = {r for r in roots if r not in ("numpy", "jax") and r not in sys.stdlib_module_names}
    assert not foreign, f"chipnum imports {foreign}"
    assert "lpu_jax" not in roots


# --------------------------------------------------------------------------- element-wise against fpmath
@FAST
@given(F32)
def test_unary_bit_exact_hypothesis(x):
    for name, ref in REF_UNARY.items():
        assert_bits_equal(getattr(C, name)(x), ref(x), name)


@FAST
@given(F32, F32)
def test_binary_bit_exact_hypothesis(a, b):
    for name, ref in REF_BINARY.items():
        assert_bits_equal(getattr(C, name)(a, b), ref(a, b), name)


def test_unary_bit_exact_sample_and_branch_points():
    for name, ref in REF_UNARY.items():
        assert_bits_equal(getattr(C, name)(SAMPLE), ref(SAMPLE), name)


def test_binary_bit_exact_sample_and_subnormal_boundary():
    for name, ref in REF_BINARY.items():
        assert_bits_equal(getattr(C, name)(PAIR_A, PAIR_B), ref(PAIR_A, PAIR_B), name)
    # the pairs do reach both sides of the mul boundary at 2^-126
    p = u32(C.mul(PAIR_A, PAIR_B)) & 0x7FFFFFFF
    assert np.sum(p == 0x00800000) > 100 and np.sum((p == 0) & (u32(PAIR_A) & 0x7F800000 != 0)) > 100


def test_f16_to_f32_all_values():
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    assert_bits_equal(C.f16_to_f32(h), jax.jit(F.f16_to_f32)(h), "f16_to_f32")


def test_special_values_and_documented_rules():
    x = f32([0, 0x80000000, 0x7F800000, 0xFF800000, 0xFFC00001, 0x7FC00001, 0x00000001, 0x80000001])
    assert list(u32(C.exp(x))) == [0x3F800000, 0x3F800000, 0x7F800000, 0, 0xFFC00000, 0x7FC00000] + [0x3F800000] * 2
    assert list(u32(C.tanh(x))) == [0, 0x80000000, 0x3F800000, 0xBF800000, 0xFFC00000, 0x7FC00000, 0, 0x80000000]
    assert list(u32(C.rsqrt(x))) == [0x7F800000, 0xFF800000, 0, 0x7FC00000, 0xFFC00000, 0x7FC00000] + [
        0x7F800000,
        0xFF800000,
    ]
    assert list(u32(C.recip(x))) == [0x7F800000, 0xFF800000, 0, 0x80000000, 0xFFC00000, 0x7FC00000] + [
        0x7F800000,
        0xFF800000,
    ]
    # one-input ops keep a negative NaN's sign; two-input ops always give +canonical
    assert list(u32(C.neg(x[4:6]))) == [0xFFC00000, 0x7FC00000]
    assert u32(C.add(x[4], np.float32(1))) == 0x7FC00000 and u32(C.mul(x[2], np.float32(0))) == 0x7FC00000
    assert u32(C.max_(np.float32(0), np.float32(-0.0))) == 0 and u32(C.min_(np.float32(0), np.float32(-0.0))) == (
        0x80000000
    )
    assert C.f32_to_f16(f32([0xFFC00001])).view(np.uint16)[0] == 0xFE00
    # saturating int8 conversion: rounds half to even (where astype would truncate), NaN -> 0
    v = np.float32([2.5, 3.5, -2.5, -0.5, 126.6, 300, -300, np.inf, np.nan])
    assert list(C.to_int8_sat(v)) == [2, 4, -2, 0, 127, 127, -128, 127, 0]
    # every function keeps any shape, 0-d included
    assert C.exp(np.float32(0)).shape == () and C.tanh(np.zeros((2, 3, 4), np.float32)).shape == (2, 3, 4)
    with pytest.raises(TypeError):
        C.exp(np.zeros(3))  # float64


def test_div_is_mul_by_reciprocal_not_ieee_division():
    rng = np.random.default_rng(3)
    a = rng.uniform(-10, 10, 5000).astype(np.float32)
    b = rng.uniform(0.1, 10, 5000).astype(np.float32)
    (got,) = C.evaluate(jax.make_jaxpr(lambda a, b: a / b)(a, b), a, b, lanes=8)
    two_roundings = (a.astype(np.float64) * (np.float32(1) / b).astype(np.float64)).astype(np.float32)
    assert_bits_equal(got, two_roundings, "div")
    differs = np.flatnonzero(u32(got) != u32(a / b))
    assert differs.size > 0, "chip division should differ from IEEE a / b somewhere"
    i = differs[0]
    assert C.div(a[i], b[i]) != a[i] / b[i]


# --------------------------------------------------------------------------- reductions
def _ref_add(a, b) -> np.float32:
    """Scalar fp32 add with flushing and +canonical NaN, written independently of chipnum."""
    with np.errstate(all="ignore"):
        r = np.float32(a) + np.float32(b)
    bits = int(u32(r))
    if bits & 0x7FFFFFFF > 0x7F800000:
        return f32(0x7FC00000)[()]
    if bits & 0x7F800000 == 0:
        return f32(bits & 0x80000000)[()]
    return r


def _shift_reduce(row: np.ndarray, lanes: int) -> np.float32:
    """Brute force of the chip's lane reduction: tiles added lane by lane, then repeated 'shift down by k lanes
    (zero fill) and add' for k = 1, 2, 4, ...; lane 0 ends up holding the total."""
    n = len(row)
    acc = [np.float32(0)] * lanes
    for i in range(min(n, lanes)):
        acc[i] = np.float32(row[i])
    for start in range(lanes, n, lanes):
        for i in range(lanes):
            acc[i] = _ref_add(acc[i], row[start + i] if start + i < n else np.float32(0))
    w = min(n, lanes)
    vec = [acc[i] if i < w else np.float32(0) for i in range(lanes)]
    k = 1
    while k < w:
        vec = [_ref_add(vec[i], vec[i + k] if i + k < lanes else np.float32(0)) for i in range(lanes)]
        k *= 2
    return vec[0]


@pytest.mark.parametrize("lanes", [4, 6, 8, 16])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 6, 8, 13, 16, 17, 40])
def test_lane_sum_matches_shift_and_add_brute_force(lanes, n):
    rng = np.random.default_rng(100 * lanes + n)
    x = (rng.choice([-1, 1], (3, n)) * np.exp(rng.uniform(-12, 12, (3, n)))).astype(np.float32)
    got = C.lane_sum(x, lanes)
    want = np.array([_shift_reduce(row, lanes) for row in x], np.float32)
    assert_bits_equal(got, want, f"lane_sum n={n} lanes={lanes}")


def test_lane_sum_order_matters():
    x = np.float32([1e8, 1, -1e8, 1])
    # pairwise: (1e8 + 1) + (-1e8 + 1) = 1e8 - 1e8 = 0; in sequence ((1e8 + 1) - 1e8) + 1 = 1
    assert C.lane_sum(x, 4) == 0 and np.sum(x) == 1
    # the lane count changes the result (tiles of 2, then the tree, differ from one tree of 4)
    assert C.lane_sum(x, 2) != C.lane_sum(x, 4)
    rng = np.random.default_rng(5)
    y = (rng.choice([-1, 1], (200, 37)) * np.exp(rng.uniform(-15, 15, (200, 37)))).astype(np.float32)
    assert np.any(u32(C.lane_sum(y, 8)) != u32(np.sum(y, axis=-1)))


def _tree_over_rows(rows: list) -> np.ndarray:
    """Pairwise tree over whole vectors written as recursion: halves of a power-of-two zero-padded list."""
    width = 1
    while width < len(rows):
        width *= 2
    rows = list(rows) + [np.zeros_like(rows[0])] * (width - len(rows))

    def tree(lo, hi):
        if hi - lo == 1:
            return np.asarray(rows[lo], np.float32)
        mid = (lo + hi) // 2
        return np.vectorize(_ref_add, otypes=[np.float32])(tree(lo, mid), tree(mid, hi))

    out = tree(0, width)
    return np.where((u32(out) & 0x7F800000) == 0, f32(u32(out) & 0x80000000), out).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 2, 5, 7, 8])
def test_reduce_sum_other_axes_pairwise_and_last_axis_in_lane_order(rows):
    rng = np.random.default_rng(6 + rows)
    x = (rng.choice([-1, 1], (rows, 5, 9)) * np.exp(rng.uniform(-10, 10, (rows, 5, 9)))).astype(np.float32)
    got0, got2, got02, got01 = C.run(
        lambda x: (jnp.sum(x, 0), jnp.sum(x, 2), jnp.sum(x, (0, 2)), jnp.sum(x, (0, 1))), x, lanes=4
    )
    assert_bits_equal(got0, _tree_over_rows(list(x)), "sum over axis 0")
    assert_bits_equal(got2, C.lane_sum(x, 4), "sum over the last axis")
    assert_bits_equal(got02, _tree_over_rows(list(C.lane_sum(x, 4))), "sum over axes 0 and 2")
    inner = np.stack([_tree_over_rows(list(x[i])) for i in range(rows)])
    assert_bits_equal(got01, _tree_over_rows(list(inner)), "sum over axes 0 and 1 (axis 1 first)")
    if rows == 7:  # the tree is not the sequential sum
        seq = x[0]
        for i in range(1, rows):
            seq = np.vectorize(_ref_add, otypes=[np.float32])(seq, x[i])
        assert np.any(u32(seq) != u32(got0))


# --------------------------------------------------------------------------- evaluate on small models
def layer_norm(x, g, b):
    m = jnp.mean(x, -1, keepdims=True)
    v = jnp.mean(jnp.square(x - m), -1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + 1e-5) * g + b


def quantize(x, s):
    """docs/numerics.md's int8 policy: clip(round(x * (1/s)), -127, 127) then int8."""
    return jnp.clip(jnp.round(x * (1.0 / s)), -127, 127).astype(jnp.int8)


def mlp_int8(x, w1, s1, w2, s2, sx1, sx2):
    q1 = quantize(x, sx1)
    acc1 = jnp.dot(q1, w1, preferred_element_type=jnp.int32)
    h = jax.nn.gelu(acc1.astype(jnp.float32) * (sx1 * s1), approximate=True)
    q2 = quantize(h, sx2)
    acc2 = jnp.dot(q2, w2, preferred_element_type=jnp.int32)
    return acc1, q2, acc2, acc2.astype(jnp.float32) * (sx2 * s2)


def test_layer_norm_and_softmax_close_to_jax():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, (6, 40)).astype(np.float32)
    g, b = rng.normal(1, 0.1, 40).astype(np.float32), rng.normal(0, 0.1, 40).astype(np.float32)
    for lanes in (8, 16, 64):
        ln = C.run(layer_norm, x, g, b, lanes=lanes)
        np.testing.assert_allclose(ln, layer_norm(x, g, b), rtol=2e-5, atol=2e-5)
        sm = C.run(lambda x: jax.nn.softmax(x, -1), x, lanes=lanes)
        np.testing.assert_allclose(sm, jax.nn.softmax(x, -1), rtol=2e-5, atol=1e-7)


def test_int8_mlp_matmuls_exact_and_output_close():
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (5, 48)).astype(np.float32)
    w1 = rng.integers(-127, 128, (48, 32)).astype(np.int8)
    w2 = rng.integers(-127, 128, (32, 24)).astype(np.int8)
    s1 = rng.uniform(0.5, 1.5, 32).astype(np.float32) / 127
    s2 = rng.uniform(0.5, 1.5, 24).astype(np.float32) / 127
    sx1, sx2 = np.float32(3 / 127), np.float32(8 / 127)
    args = (x, w1, s1, w2, s2, sx1, sx2)
    acc1, q2, acc2, y = C.run(mlp_int8, *args, lanes=16)
    j_acc1, j_q2, _, j_y = (np.asarray(v) for v in mlp_int8(*args))
    assert acc1.dtype == np.int32 and np.array_equal(acc1, j_acc1)
    # q2 depends on tanh (chip algorithm vs XLA): equal up to a rare step at a rounding boundary
    assert np.max(np.abs(q2.astype(int) - j_q2)) <= 1 and np.mean(q2 == j_q2) > 0.99
    assert np.array_equal(acc2, np.asarray(q2, np.int64) @ np.asarray(w2, np.int64))
    np.testing.assert_allclose(y, j_y, rtol=1e-5, atol=0.05)


# --------------------------------------------------------------------------- matrix products
def _frac_to_f32(q: Fraction) -> np.float32:
    """Round an exact rational to fp32, nearest even (values here are far from the fp32 subnormal range)."""
    if q == 0:
        return np.float32(0)
    guess = np.float32(float(q))
    cands = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - q), int(u32(c)) & 1))
    return np.float32(best)


def _fraction_dot_f16(a: np.ndarray, b: np.ndarray, lanes: int) -> np.ndarray:
    """[M, K] x [K, N] float16: exact chunk sums of L/2 products rounded to fp32, chunk results added exactly
    and rounded after each addition."""
    m, k = a.shape
    n = b.shape[1]
    chunk = lanes // 2
    out = np.zeros((m, n), np.float32)
    for i in range(m):
        for j in range(n):
            acc = None
            for s in range(0, k, chunk):
                exact = sum(Fraction(float(a[i, t])) * Fraction(float(b[t, j])) for t in range(s, min(s + chunk, k)))
                part = _frac_to_f32(exact)
                acc = part if acc is None else _frac_to_f32(Fraction(float(acc)) + Fraction(float(part)))
            out[i, j] = acc
    return out


@pytest.mark.parametrize("lanes,k", [(8, 13), (8, 4), (4, 9), (16, 40)])
def test_fp16_dot_equals_exact_fraction_chunks(lanes, k):
    rng = np.random.default_rng(lanes * 100 + k)
    a = (rng.normal(0, 1, (3, k)) * np.exp2(rng.integers(-6, 7, (3, k)))).astype(np.float16)
    b = (rng.normal(0, 1, (k, 4)) * np.exp2(rng.integers(-6, 7, (k, 4)))).astype(np.float16)
    (got,) = C.evaluate(
        jax.make_jaxpr(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))(a, b), a, b, lanes=lanes
    )
    assert_bits_equal(got, _fraction_dot_f16(a, b, lanes), f"fp16 dot lanes={lanes} k={k}")
    # the chunk order is visible: one chunk of everything rounds differently somewhere
    if k > lanes // 2:
        big = (rng.normal(0, 1, (40, k)) * np.exp2(rng.integers(-12, 13, (40, k)))).astype(np.float16)
        split = C.run(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32), big, b, lanes=lanes)
        whole = C.run(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32), big, b, lanes=2 * k)
        assert np.any(u32(split) != u32(whole))


def test_fp16_dot_special_values():
    inf, nan = np.float16(np.inf), np.float16(np.nan)
    a = np.array([[inf, 1], [inf, -inf], [nan, 1], [-0.0, -0.0], [inf, 0], [0, 1], [-0.0, 1]], np.float16)
    b = np.array([[1], [np.float16(-0.0)]], np.float16)
    b2 = np.array([[1], [1]], np.float16)

    def fn(a, b):
        return jnp.dot(a, b, preferred_element_type=jnp.float32)

    got = C.run(fn, a, b, lanes=8)
    assert list(u32(got[:, 0])) == [0x7F800000, 0x7FC00000, 0x7FC00000, 0, 0x7F800000, 0, 0]
    got = C.run(fn, a[4:5], np.array([[0], [1]], np.float16), lanes=8)  # inf * 0
    assert u32(got[0, 0]) == 0x7FC00000
    got = C.run(fn, a[1:2], b2, lanes=2)  # +inf and -inf in different chunks: inf + -inf = NaN
    assert u32(got[0, 0]) == 0x7FC00000


def test_attention_einsums_with_batch_dims():
    rng = np.random.default_rng(9)
    q = rng.normal(0, 1, (2, 3, 5, 16)).astype(np.float16)  # [batch, heads, seq, dim]
    k = rng.normal(0, 1, (2, 3, 7, 16)).astype(np.float16)

    def scores(q, k):
        return jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)

    got = C.run(scores, q, k, lanes=8)
    want = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64))
    assert got.shape == (2, 3, 5, 7) and got.dtype == np.float32
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)
    for bi, hi in [(0, 0), (1, 2)]:  # each batch slice is the plain 2-D product
        assert_bits_equal(got[bi, hi], _fraction_dot_f16(q[bi, hi], k[bi, hi].T, 8), "einsum slice")
    qi = rng.integers(-128, 128, (2, 4, 16)).astype(np.int8)
    ki = rng.integers(-128, 128, (2, 16, 6)).astype(np.int8)
    got = C.run(lambda a, b: jnp.einsum("bqd,bdk->bkq", a, b, preferred_element_type=jnp.int32), qi, ki, lanes=8)
    assert np.array_equal(got, np.einsum("bqd,bdk->bkq", qi.astype(np.int64), ki.astype(np.int64)))


# --------------------------------------------------------------------------- structural primitives, exactly
def test_gather_patterns_match_jax():
    rng = np.random.default_rng(10)
    table = rng.normal(0, 1, (10, 6)).astype(np.float32)
    ids = np.array([0, 3, 9, -1, -10, 10, 42, -11], np.int32)

    def fn(t, i):
        ok = jnp.clip(i, 0, 9)
        return (
            jnp.take(t, i, axis=0),  # fill_or_drop: out-of-range rows are NaN
            jnp.take(t, i, axis=0, mode="clip"),
            t[ok],
            t[:, ok[:4] % 6],
            t[ok[2], 1:4],
        )

    got = C.run(fn, table, ids, lanes=8)
    want = fn(table, ids)
    for g, w in zip(got, want, strict=True):
        assert_bits_equal(g, np.asarray(w), "gather")
    # take_along_axis (operand batching dims), without the sort
    idx = rng.integers(0, 6, (10, 2)).astype(np.int32)
    got = C.run(lambda t, i: jnp.take_along_axis(t, i, axis=1), table, idx, lanes=8)
    assert_bits_equal(got, np.take_along_axis(table, idx, axis=1), "take_along_axis")


def test_structural_and_control_flow_match_jax_exactly():
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (4, 6)).astype(np.float32)
    n = np.int32(2)

    def fn(x, n):
        a = jax.lax.dynamic_slice(x, (n, 1), (2, 3))
        b = jax.lax.dynamic_update_slice(x, a * 0 - 1, (n + 5, 2))  # start clamped to 2
        c = jnp.concatenate([x.T, jnp.flip(x, 0).T], axis=1).reshape(3, 2, 8)
        d = jnp.pad(x, ((1, 0), (2, 1)), constant_values=7.0)
        e = jax.lax.pad(x, np.float32(0), ((0, 0, 1), (-1, 1, 2)))
        f, g = jnp.split(x, [2], axis=1)
        h = jnp.where(x > 0, x, -x) + jnp.arange(6, dtype=jnp.float32)
        i = jnp.argmax(x, axis=1), jnp.argmin(x, axis=0), jnp.max(x, 1), jnp.min(x)
        j = jnp.cumsum(jnp.arange(5) * n), jnp.sum(jnp.arange(10, dtype=jnp.int32) * n)
        k = jax.lax.scan(lambda c, r: (jnp.maximum(c, r), c), jnp.zeros(6, jnp.float32) - 9, x)
        m = jax.lax.fori_loop(0, 3, lambda _, v: v * 2.0, x[0])
        o = jax.lax.cond(n > 1, lambda v: -v, lambda v: v, x[1])
        p = jnp.squeeze(x[None, :, :1], (0, 2)), jnp.expand_dims(x, 1).shape
        q = (
            jnp.round(x * 4).astype(jnp.int32),
            (x > 0).astype(jnp.float32),
            jnp.arange(3, dtype=jnp.int8).astype(jnp.float16),
        )
        return a, b, c, d, e, f, g, h, i, j, k, m, o, p[0], q

    got = jax.tree_util.tree_leaves(C.run(fn, x, n, lanes=8))
    want = jax.tree_util.tree_leaves(fn(x, n))
    assert len(got) == len(want)
    for idx, (g, w) in enumerate(zip(got, want, strict=True)):
        w = np.asarray(w)
        if w.dtype == np.float32:
            assert_bits_equal(g, w, f"leaf {idx}")
        else:
            assert g.dtype == w.dtype and np.array_equal(g, w), f"leaf {idx}"


def test_float_to_int_conversion_rounds_as_the_vxm():
    """convert_element_type f32 -> int is the VXM's conversion: equal to jax after jnp.round, but a value that is
    not an integer yet is rounded half to even where jax truncates (docs/numerics.md's quantisation pattern)."""
    x = np.float32([0.4, 0.6, 1.5, 2.5, -1.5, -0.6, 1e10, -1e10])
    got = C.run(lambda x: (x.astype(jnp.int32), jnp.round(x).astype(jnp.int32)), x, lanes=8)
    assert list(got[0]) == [0, 1, 2, 2, -2, -1, 2**31 - 1, -(2**31)]
    assert np.array_equal(got[1], got[0])
    assert not np.array_equal(got[0][:6], x[:6].astype(np.int32))  # jax/numpy truncate


def test_float16_elementwise_goes_through_fp32():
    rng = np.random.default_rng(12)
    a, b = rng.normal(0, 3, (2, 50)).astype(np.float16)
    got = C.run(lambda a, b: (a * b + a, jnp.tanh(a)), a, b, lanes=8)
    wide = C.f16_to_f32
    assert_bits_equal(got[0], C.f32_to_f16(C.add(wide(C.f32_to_f16(C.mul(wide(a), wide(b)))), wide(a))), "f16 ops")
    assert_bits_equal(got[1], C.f32_to_f16(C.tanh(wide(a))), "f16 tanh")


# --------------------------------------------------------------------------- errors
def test_unsupported_primitive_names_itself_and_the_source_line():
    line = inspect.currentframe().f_lineno + 1
    fn = lambda x: jnp.sin(x) + 1.0  # noqa: E731
    with pytest.raises(NotImplementedError) as info:
        C.run(fn, np.ones(3, np.float32), lanes=8)
    msg = str(info.value)
    assert "'sin'" in msg and f"test_chipnum.py:{line}" in msg, msg
    # an unsupported parameter of a supported primitive is reported the same way
    with pytest.raises(NotImplementedError, match=r"round.*rounding_method.*test_chipnum\.py:\d+"):
        C.run(lambda x: jax.lax.round(x), np.ones(3, np.float32), lanes=8)
    # inside a jit sub-jaxpr too
    with pytest.raises(NotImplementedError, match=r"'log'.*test_chipnum\.py:\d+"):
        C.run(jax.jit(lambda x: jnp.log(x)), np.ones(3, np.float32), lanes=8)


def test_bad_arguments():
    jaxpr = jax.make_jaxpr(lambda x: x + 1)(np.ones(3, np.float32))
    with pytest.raises(ValueError):
        C.evaluate(jaxpr, np.ones(3, np.float32), lanes=0)
    with pytest.raises(ValueError):
        C.evaluate(jaxpr, np.ones(4, np.float32), lanes=8)
    with pytest.raises(ValueError):
        C.evaluate(jaxpr, lanes=8)

"""The compiler against the independent reference numerics (`lpu_jax.reference.chipnum`, docs/numerics.md).

Every test compiles a small JAX function for the `small` config, runs the program on the cycle-level simulator
and compares the outputs with chipnum's evaluation of the same jaxpr: bit for bit on int8 and fp32 element-wise
paths, within the documented bound on fp16 matrix products. All runs share one compiled simulator (same config,
same program length class, whole 256-cycle scans).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpu_jax as L
from lpu_jax.compiler import CapacityError, LoweringError, ScheduleError, check_schedule, compile_fn
from lpu_jax.reference import chipnum
from lpu_jax.state import hazard_report

CFG = L.small()
LANES = CFG.n_lanes
D = 40  # two lane tiles on `small` (32 lanes), the second ragged


def layer_norm(x, g, b, eps=1e-5):
    n = x.shape[-1]
    mu = jnp.sum(x, -1, keepdims=True) * (1.0 / n)
    xc = x - mu
    var = jnp.sum(xc * xc, -1, keepdims=True) * (1.0 / n)
    return xc * jax.lax.rsqrt(var + eps) * g + b


def quant(x, inv):
    return jnp.clip(jnp.round(x * inv), -127, 127).astype(jnp.int8)


def quant_lax(x, inv):  # the reference models' form: round, clamp, convert
    return jax.lax.clamp(-127.0, jax.lax.round(x * inv, jax.lax.RoundingMethod.TO_NEAREST_EVEN), 127.0).astype(jnp.int8)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + jnp.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def ffn_int8(p, x):
    """A post-LN int8 feed-forward block as the int8 policy writes it (docs/numerics.md)."""
    h = jnp.dot(quant_lax(x, p["inv1"]), p["w1"], preferred_element_type=jnp.int32)
    h = gelu_tanh(h.astype(jnp.float32) * p["deq1"] + p["b1"])
    y = jnp.dot(quant(h, p["inv2"]), p["w2"], preferred_element_type=jnp.int32)
    y = y.astype(jnp.float32) * p["deq2"] + p["b2"]
    return layer_norm(x + y, p["g"], p["b"])


def ffn_fp16(p, x):
    h = jnp.dot(x.astype(jnp.float16), p["w1"], preferred_element_type=jnp.float32)
    h = gelu_tanh(h + p["b1"])
    return jnp.dot(h.astype(jnp.float16), p["w2"], preferred_element_type=jnp.float32) + p["b2"]


def softmax(x):
    m = jnp.max(x, -1, keepdims=True)
    e = jnp.exp(x - m)
    return e / jnp.sum(e, -1, keepdims=True)


def int8_params(rng, d=D, f=56):
    return {
        "inv1": np.float32(30.0),
        "w1": rng.integers(-127, 128, (d, f)).astype(np.int8),
        "deq1": (rng.random(f) * 2e-3).astype(np.float32),
        "b1": (rng.standard_normal(f) * 0.1).astype(np.float32),
        "inv2": np.float32(40.0),
        "w2": rng.integers(-127, 128, (f, d)).astype(np.int8),
        "deq2": (rng.random(d) * 2e-3).astype(np.float32),
        "b2": (rng.standard_normal(d) * 0.1).astype(np.float32),
        "g": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
        "b": (0.1 * rng.standard_normal(d)).astype(np.float32),
    }


def chip_run(fn, params, *inputs, **kw):
    c = compile_fn(fn, params, *inputs, cfg=CFG)
    out, state = c.run(*inputs, **kw)
    assert not hazard_report(CFG, state), hazard_report(CFG, state)
    return c, out


def bits(x):
    x = np.asarray(x)
    return x.view({4: np.uint32, 2: np.uint16, 1: np.uint8}[x.dtype.itemsize])


def assert_bits_equal(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    bad = bits(got) != bits(want)
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} elements differ, first at {np.argwhere(bad)[0]}: "
        f"{got[tuple(np.argwhere(bad)[0])]} vs {want[tuple(np.argwhere(bad)[0])]}"
    )


# --------------------------------------------------------------------------- numbers
def test_layer_norm_bit_exact():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, D)) * 3 + 1).astype(np.float32)
    p = {"g": rng.standard_normal(D).astype(np.float32), "b": rng.standard_normal(D).astype(np.float32)}
    fn = lambda p, x: layer_norm(x, p["g"], p["b"])  # noqa: E731
    _, out = chip_run(fn, p, x)
    assert_bits_equal(out, chipnum.run(fn, p, x, lanes=LANES), "layer norm")
    np.testing.assert_allclose(out, fn(p, x), rtol=1e-5, atol=1e-5)  # and it is a layer norm


def test_int8_ffn_block_bit_exact():
    rng = np.random.default_rng(2)
    p = int8_params(rng, f=120)  # 4 N tiles, then 4 K tiles: every plane, east and west, with partial sums
    x = rng.standard_normal((4, D)).astype(np.float32)
    c, out = chip_run(ffn_int8, p, x)
    want = chipnum.run(ffn_int8, p, x, lanes=LANES)
    assert_bits_equal(out, want, "int8 FFN block")
    assert c.report().macs == 4 * D * 120 * 2
    planes = {q.queue.split(".")[1] for q in c.schedule.instrs if q.ins.mnemonic.startswith("ACC")}
    assert planes == {"0", "1", "2", "3"}


def test_softmax_bit_exact():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 24)) * 4 - 30).astype(np.float32)  # all negative: a zero-filled max would fail
    _, out = chip_run(lambda p, x: softmax(x), {}, x)
    assert_bits_equal(out, chipnum.run(lambda p, x: softmax(x), {}, x, lanes=LANES), "softmax")
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_fp16_ffn_within_bound():
    rng = np.random.default_rng(4)
    f = 56
    p = {
        "w1": (rng.standard_normal((D, f)) / np.sqrt(D)).astype(np.float16),
        "b1": rng.standard_normal(f).astype(np.float32),
        "w2": (rng.standard_normal((f, D)) / np.sqrt(f)).astype(np.float16),
        "b2": rng.standard_normal(D).astype(np.float32),
    }
    x = rng.standard_normal((5, D)).astype(np.float32)
    _, out = chip_run(ffn_fp16, p, x)
    want = chipnum.run(ffn_fp16, p, x, lanes=LANES)
    rel = np.linalg.norm(out - want) / np.linalg.norm(want)
    assert rel <= 1e-3, rel  # docs/numerics.md: the fp16 path within 1e-3 relative L2


def test_mean_over_rows_pairwise():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, D)).astype(np.float32)
    fn = lambda p, x: jnp.sum(x, axis=0) * (1.0 / 5)  # noqa: E731
    _, out = chip_run(fn, {}, x)
    assert_bits_equal(out, chipnum.run(fn, {}, x, lanes=LANES), "sum over rows")


# --------------------------------------------------------------------------- the outputs come from the chip
def test_outputs_are_made_by_the_program():
    rng = np.random.default_rng(6)
    p = int8_params(rng)
    x = rng.standard_normal((2, D)).astype(np.float32)
    c = compile_fn(ffn_int8, p, x, cfg=CFG)
    clean, _ = c.run(x)
    # every word of the output locations starts poisoned: the result is the same, so the program wrote them all
    poisoned, _ = c.run(x, poison=0xA5)
    assert_bits_equal(poisoned, clean, "poisoned run")
    img = c.mem_image(x, poison=0xA5)
    out_lay = c.schedule.tensors[c.out_names[0]].layout
    assert (img[out_lay.slice, out_lay.addr] == 0xA5).all()
    # one weight byte changed in the MEM image changes the output
    w = next(t for n, t in c.schedule.tensors.items() if t.role == "param" and n.startswith("w1"))
    img = c.mem_image(x)
    s, a = int(w.layout.slice[0, 0, 0]), int(w.layout.addr[0, 0, 0])
    img[s, a, 0] ^= 0x40
    changed, _ = c.run(x, mem=img)
    assert not np.array_equal(bits(changed), bits(clean))


# --------------------------------------------------------------------------- the schedule is data, and checked
def test_schedule_reemits_and_its_check_catches_a_moved_instruction():
    rng = np.random.default_rng(7)
    p = int8_params(rng)
    x = rng.standard_normal((2, D)).astype(np.float32)
    c = compile_fn(ffn_int8, p, x, cfg=CFG)
    want, _ = c.run(x)
    # a changed choice, re-emitted without lowering again: everything 7 cycles later gives the same bits
    later = [dataclasses.replace(q, cycle=q.cycle + 7) for q in c.schedule.instrs]
    s1 = dataclasses.replace(c.schedule, instrs=later)
    check_schedule(s1)
    c1 = dataclasses.replace(c, schedule=s1, program=s1.emit())
    assert c1.cycles == c.cycles + 7 and c1.program != c.program
    got, _ = c1.run(x)
    assert_bits_equal(got, want, "re-emitted schedule")
    # delay one VXM instruction by a cycle: its operands have flown past, so the check must refuse it
    s2 = dataclasses.replace(c.schedule, instrs=list(c.schedule.instrs))
    taken = {(q.queue, q.cycle) for q in s2.instrs}
    i = next(k for k, q in enumerate(s2.instrs) if q.queue.startswith("VXM.") and (q.queue, q.cycle + 1) not in taken)
    s2.instrs[i] = dataclasses.replace(s2.instrs[i], cycle=s2.instrs[i].cycle + 1)
    with pytest.raises(ScheduleError, match="reads stream"):
        check_schedule(s2)
    # the same for an LW moved before its tile's data arrive
    s3 = dataclasses.replace(c.schedule, instrs=list(c.schedule.instrs))
    i = next(k for k, q in enumerate(s3.instrs) if q.ins.mnemonic == "LW")
    s3.instrs[i] = dataclasses.replace(s3.instrs[i], cycle=s3.instrs[i].cycle - 1)
    with pytest.raises(ScheduleError):
        check_schedule(s3)


def test_report_adds_up():
    rng = np.random.default_rng(8)
    p = int8_params(rng)
    x = rng.standard_normal((4, D)).astype(np.float32)
    c = compile_fn(ffn_int8, p, x, cfg=CFG)
    r = c.report()
    assert r.cycles == c.cycles and r.instructions == len(c.schedule.instrs)
    assert all(0 < u <= 1 for k, u in r.utilisation.items() if k != "SXM")
    words = len({(s, a) for t in c.schedule.tensors.values() for s, a in zip(t.layout.slice.flat, t.layout.addr.flat)})
    assert r.sram_bytes["total"] == words * LANES == r.sram_bytes["W"] + r.sram_bytes["E"]
    peak = CFG.n_planes * LANES * LANES
    assert r.mxm_mac_utilisation == pytest.approx(r.macs / (peak * r.cycles))
    assert r.critical_path[0][3] <= r.cycles and r.critical_path[-1][2] >= 0
    assert "cycles" in str(r)


# --------------------------------------------------------------------------- clear errors
def test_unsupported_primitive_names_it_and_the_line():
    x = np.ones((2, D), np.float32)
    with pytest.raises(LoweringError, match=r"`sin`.*test_compiler.py"):
        compile_fn(lambda p, x: jnp.sin(x) + 1.0, {}, x, cfg=CFG)


def test_unsupported_shape_is_named():
    x = np.ones((2, D), np.float32)
    with pytest.raises(LoweringError, match=r"reshape \(2, 40\) -> \(4, 20\) moves data across the lanes"):
        compile_fn(lambda p, x: jnp.exp(x).reshape(4, 20) * 2.0, {}, x, cfg=CFG)


def test_model_too_large_for_sram_says_bytes():
    x = np.ones((2, 64), np.int8)
    w = np.ones((64, 64 * 400), np.int8)  # 1.6 MB of weights, small has 512 KiB
    with pytest.raises(CapacityError, match=r"needs \d+ more bytes; \d+ of 524288 bytes"):
        compile_fn(lambda p, x: jnp.dot(x, p["w"], preferred_element_type=jnp.int32), {"w": w}, x, cfg=CFG)


def test_bad_input_at_run_time():
    x = np.ones((2, D), np.float32)
    c = compile_fn(lambda p, x: x * 2.0, {}, x, cfg=CFG)
    with pytest.raises(ValueError, match=r"input in0: expected float32 \(2, 40\), got float32 \(3, 40\)"):
        c.run(np.ones((3, D), np.float32))


def test_compare_and_select_bit_exact():
    """jnp.where on computed float and int comparisons (the compares write int32 1 / 0)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, D)).astype(np.float32)
    ids = rng.integers(0, 4, (3, D)).astype(np.int32)

    def fn(p, x, ids):
        m = (ids != 0).astype(jnp.float32)
        return jnp.where(x > 0.25, x * 2.0, -1.0) * m + jnp.where(x <= ids.astype(jnp.float32), 0.5, x)

    _, out = chip_run(fn, {}, x, ids)
    assert_bits_equal(out, chipnum.run(fn, {}, x, ids, lanes=LANES), "compare and select")
    np.testing.assert_array_equal(out, fn({}, x, ids))


def test_argmax_and_scalar_inputs():
    """argmax along the lanes (first index of the maximum, ties included) and a scalar input that meets vectors."""
    rng = np.random.default_rng(10)
    x = rng.integers(-3, 4, (3, D)).astype(np.float32)  # many ties
    k = np.float32(0.5)

    def fn(p, x, k):
        return jnp.argmax(x * k, axis=-1), jnp.argmax(x[0] - k, axis=-1)

    _, (a, b) = chip_run(fn, {}, x, k)
    want = chipnum.run(fn, {}, x, k, lanes=LANES)
    np.testing.assert_array_equal(a, np.argmax(x * k, -1))
    np.testing.assert_array_equal(a, want[0])
    assert int(b) == int(np.argmax(x[0] - k)) == int(want[1])

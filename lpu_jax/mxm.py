"""MXM: the matrix unit, `cfg.n_planes` planes (P20: 4), each an L x L array of multiply-accumulate cells
(L = n_lanes = 320 on groqchip1). docs/mxm.md has the full semantics and every assumption; in short:

Each plane p has three ICU queues (P20 counts 12 MXM queues for 4 planes): `MXM.p.W` (weights: LW, IW),
`MXM.p.A` (activations: ABC) and `MXM.p.C` (accumulators: ACC). A plane west of the VXM takes its weights and
activations off westward streams and emits eastward; an east plane the reverse. For an instruction issued at t:
  * `LW r, S, n`: weight-buffer rows r..r+n-1 <- the bytes on streams S..S+n-1 at the plane's position at t.
  * `IW`: the buffer, as it is after the LWs of cycle t, is installed: ABCs issued at t + d(mxm.iw) or later
    multiply by it; earlier ones by the previous weights. So the next tile's weights can load (LW) and even be
    staged (IW) while the current tile computes: the model has one weight buffer plus the installed array [A].
  * `ABC.i8 S`: the int8 activation vector x (L lanes) on S enters the array; the int32 products
    y_j = sum_k x_k * w_kj, exact, are due d(mxm.abc) + (n_superlanes - 1) cycles later. The second term is the
    cross-superlane reduction: the model keeps vectors in superlane-0 time and a full-vector dot product needs
    the last superlane's data, which arrives n_superlanes - 1 cycles after the first (architecture.md §3).
  * `ABC.f16 S, h`: the fp16 vector on the 2-stream group S, lanes h*L/2 .. h*L/2 + L/2 - 1 (K = L/2 = 160), times
    the installed weights read as fp16 [L/2 x L] (weight row k = buffer rows 2k, 2k+1, in group byte order):
    y_j = the exact sum of the K products, rounded once to fp32 (`dotmath.dot_f16`). It occupies the plane (and
    its queue) 2 cycles: 4 planes give 2 fp16 sub-ops per cycle, a quarter of the int8 MAC rate (P22).
  * `ACC.T a, m, D` (T = i32 for ABC.i8, f32 for ABC.f16): takes the product due at t and sets accumulator row a to
    it (m & ACC_ADD == 0) or adds it (m & ACC_ADD: int32 wrap-around, or fp32 round-to-nearest-even); with
    m & ACC_EMIT the new row value goes out on the 4-stream group D at t + d(mxm.acc) (isa.ACC_ADD = 1,
    isa.ACC_EMIT = 2).
An ACC with no product of its type due, or a product due with no ACC, is an `mxm_unpaired` hazard (where =
plane): the ACC then uses a zero product, the orphan product is lost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import isa
from . import streams as st
from .config import ChipConfig
from .dotmath import dot_f16, dot_i8_values, i8_as_f32
from .dtypes import dtype_by_name, unpack_u16
from .fpmath import flush_f32
from .state import HAZARDS, MachineState

__all__ = ["mxm_step", "abc_latency"]

UNPAIRED = HAZARDS.index("mxm_unpaired")
_F16, _F32 = dtype_by_name("f16").code, dtype_by_name("f32").code
_CANON_F32 = np.uint32(0x7FC00000)


def abc_latency(cfg: ChipConfig) -> int:
    """Cycles from an ABC's issue to the ACC that takes its product: d(mxm.abc) + the cross-superlane reduction."""
    return cfg.delay("mxm.abc") + cfg.n_superlanes - 1


def _bytes_of(v: jnp.ndarray, cfg: ChipConfig) -> jnp.ndarray:
    """uint32 [..., L] -> the four byte rows uint8 [..., 4, L] of a 4-stream group."""
    rows = [(v >> (8 * i)).astype(jnp.uint8) for i in range(4)]
    if cfg.group_byte_order == "big":
        rows = rows[::-1]
    return jnp.stack(rows, -2)


def mxm_step(cfg: ChipConfig, state: MachineState, ins: jnp.ndarray):
    """One cycle of every plane. `ins` int32 [3 * Pl, F]: per plane the rows its W, A and C queues issued.

    Returns (state, port outputs for `pipeline.emit`, hazards)."""
    Pl, L, D = cfg.n_planes, cfg.n_lanes, cfg.delay_slots
    if Pl == 0:
        none = jnp.zeros((0,), jnp.int32)
        return (
            state,
            {"valid": none > 0, "sid": none, "width": none, "data": jnp.zeros((0, 4, L), jnp.uint8), "delay": none},
            [],
        )
    c = state.cycle
    m = state.mxm
    w_ins, a_ins, c_ins = ins[0::3], ins[1::3], ins[2::3]
    pos = jnp.asarray(cfg.positions[cfg.mxm_slices])
    planes = jnp.arange(Pl)

    # 1. Installs due now take effect (before this cycle's ABCs read the array).
    due_now = m.install_due == c

    def install(ops):
        warr, wf = ops
        sel = due_now[:, None, None]
        return jnp.where(sel, m.staged, warr), jnp.where(sel, i8_as_f32(m.staged), wf)

    warr, warr_f32 = jax.lax.cond(jnp.any(due_now), install, lambda ops: ops, (m.warr, m.warr_f32))

    # 2. LW: n rows off n consecutive streams into the weight buffer.
    is_lw = w_ins[:, 0] == isa.LW

    def load(wbuf):
        r, sid, n = w_ins[:, 1], w_ins[:, 2], w_ins[:, 3]
        k = jnp.arange(cfg.n_streams)
        rows = st.read_rows(cfg, state.streams, st.row_index(cfg, sid[:, None] + k, pos[:, None], c))  # [Pl, S, L]
        tgt = jnp.where(is_lw[:, None] & (k < n[:, None]), r[:, None] + k, L)
        return wbuf.at[planes[:, None], tgt].set(rows, mode="drop")

    wbuf = jax.lax.cond(jnp.any(is_lw), load, lambda b: b, m.wbuf)

    # 3. IW: stage the buffer as it is now; it becomes the array d(mxm.iw) cycles later.
    is_iw = w_ins[:, 0] == isa.IW
    staged = jax.lax.cond(jnp.any(is_iw), lambda s: jnp.where(is_iw[:, None, None], wbuf, s), lambda s: s, m.staged)
    install_due = jnp.where(is_iw, c + cfg.delay("mxm.iw"), jnp.where(due_now, -1, m.install_due))

    # 4. ABC: activations in, products filed to be due abc_latency cycles later.
    is_abc = a_ins[:, 0] == isa.ABC
    f16 = a_ins[:, 4] == _F16

    def products(_):
        sid, h = a_ins[:, 2], a_ins[:, 3]
        x = st.read_rows(cfg, state.streams, st.row_index(cfg, sid[:, None] + jnp.arange(2), pos[:, None], c))
        y_i = jax.lax.bitcast_convert_type(dot_i8_values(i8_as_f32(x[:, 0]), warr_f32), jnp.uint32)

        def half_dot(_):
            K = L // 2
            xh = unpack_u16(x, cfg.group_byte_order).reshape(Pl, 2, K)
            xh = jnp.where(h[:, None] == 1, xh[:, 1], xh[:, 0])  # [Pl, K]
            wh = unpack_u16(warr.reshape(Pl, K, 2, L), cfg.group_byte_order)  # [Pl, K, L]: rows 2k, 2k+1
            return dot_f16(xh, wh)

        y_f = jax.lax.cond(jnp.any(is_abc & f16), half_dot, lambda _: jnp.zeros((Pl, L), jnp.uint32), None)
        return jnp.where(f16[:, None], y_f, y_i)

    y = jax.lax.cond(jnp.any(is_abc), products, lambda _: jnp.zeros((Pl, L), jnp.uint32), None)
    due = c + abc_latency(cfg)
    slot = due % D
    prod = m.prod.at[jnp.where(is_abc, slot, D), planes].set(y, mode="drop")
    meta = jnp.where(is_abc[:, None], jnp.stack([jnp.full((Pl,), due), f16.astype(jnp.int32)], 1), m.prod_meta[slot])
    prod_meta = m.prod_meta.at[slot].set(meta)

    # 5. ACC: take the product due now into an accumulator row; emit the new value if asked.
    is_acc = c_ins[:, 0] == isa.ACC
    row, dst, mode, is_f = c_ins[:, 1], c_ins[:, 2], c_ins[:, 3], c_ins[:, 4] == _F32
    now = c % D
    have = m.prod_meta[now, :, 0] == c
    match = have & (m.prod_meta[now, :, 1] == is_f.astype(jnp.int32))
    p = jnp.where((is_acc & match)[:, None], m.prod[now], 0)
    old = m.acc[planes, jnp.clip(row, 0, cfg.mxm_acc_rows - 1)]  # [Pl, L]
    add = ((mode & isa.ACC_ADD) != 0)[:, None]
    new_i = jnp.where(add, old + p, p)  # uint32 arithmetic is int32 wrap-around
    f = lambda u: jax.lax.bitcast_convert_type(u, jnp.float32)  # noqa: E731
    sum_f = flush_f32(jnp.where(add, f(old) + f(p), f(p)))
    new_f = jnp.where(jnp.isnan(sum_f), _CANON_F32, jax.lax.bitcast_convert_type(sum_f, jnp.uint32))
    new = jnp.where(is_f[:, None], new_f, new_i)
    acc = m.acc.at[jnp.where(is_acc, planes, Pl), row].set(new, mode="drop")

    out = {
        "valid": is_acc & ((mode & isa.ACC_EMIT) != 0),
        "sid": dst,
        "width": jnp.full((Pl,), 4, jnp.int32),
        "data": _bytes_of(new, cfg),
        "delay": jnp.full((Pl,), cfg.delay("mxm.acc"), jnp.int32),
    }
    mxm = m.replace(
        wbuf=wbuf,
        staged=staged,
        warr=warr,
        warr_f32=warr_f32,
        install_due=install_due,
        prod=prod,
        prod_meta=prod_meta,
        acc=acc,
    )
    hits = [(UNPAIRED, (is_acc & ~match) | (have & ~is_acc), planes)]
    return state.replace(mxm=mxm), out, hits

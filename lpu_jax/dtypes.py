"""Element types on byte streams, and packing between typed vectors and stream groups.

A stream carries one byte per lane (architecture.md §4). An element of width w bytes rides on a *stream group*
of w adjacent streams: byte k of every element goes to stream `base + k` ([A] little-endian,
`ChipConfig.group_byte_order`), and the group starts at a multiple of w ([A] `ChipConfig.group_aligned`).

Shapes: a typed vector is `[lanes]`; its stream group is `uint8 [w, lanes]` (row k = stream base+k).
Packing never goes through float arithmetic, so NaN payloads, -0.0 and subnormals survive bit for bit.
Both numpy (`pack_np`/`unpack_np`) and jax (`pack`/`unpack`) forms are given; they are the same bit layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DTYPES", "DType", "dtype_by_code", "dtype_by_name", "pack", "pack_np", "unpack", "unpack_np", "unpack_u16"]


class DType:
    """One element type: its ISA code, assembly name, width in bytes and numpy dtype."""

    def __init__(self, code: int, name: str, np_dtype, is_float: bool):
        self.code = code
        self.name = name
        self.np_dtype = np.dtype(np_dtype)
        self.width = self.np_dtype.itemsize
        self.is_float = is_float
        self.is_signed = is_float or self.np_dtype.kind == "i"

    def __repr__(self) -> str:
        return f"DType({self.name})"


# ISA codes are stable (docs/isa.md): never renumber.
DTYPES: tuple[DType, ...] = (
    DType(0, "i8", np.int8, False),
    DType(1, "u8", np.uint8, False),
    DType(2, "i16", np.int16, False),
    DType(3, "i32", np.int32, False),
    DType(4, "f16", np.float16, True),
    DType(5, "f32", np.float32, True),
)
_BY_NAME = {d.name: d for d in DTYPES}
_BY_CODE = {d.code: d for d in DTYPES}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def dtype_by_name(name: str) -> DType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown element type {name!r}; known: {', '.join(_BY_NAME)}") from None


def dtype_by_code(code: int) -> DType:
    try:
        return _BY_CODE[int(code)]
    except KeyError:
        raise ValueError(f"unknown element type code {code}") from None


def pack_np(x, dtype: DType | str, byte_order: str = "little") -> np.ndarray:
    """Typed vector `[..., lanes]` -> stream group `uint8 [..., w, lanes]` (numpy, bit-exact)."""
    dt = dtype_by_name(dtype) if isinstance(dtype, str) else dtype
    x = np.asarray(x)
    if x.dtype != dt.np_dtype:
        raise TypeError(f"pack: expected {dt.np_dtype} for {dt.name}, got {x.dtype}")
    b = x.view(_UINT[dt.width]).astype("<u4")  # integer view: no float arithmetic
    rows = [((b >> (8 * k)) & 0xFF).astype(np.uint8) for k in range(dt.width)]
    if byte_order == "big":
        rows = rows[::-1]
    return np.stack(rows, axis=-2)


def unpack_np(g, dtype: DType | str, byte_order: str = "little") -> np.ndarray:
    """Stream group `uint8 [..., w, lanes]` -> typed vector `[..., lanes]` (numpy, bit-exact)."""
    dt = dtype_by_name(dtype) if isinstance(dtype, str) else dtype
    g = np.asarray(g)
    if g.dtype != np.uint8 or g.ndim < 2 or g.shape[-2] != dt.width:
        raise ValueError(f"unpack: expected uint8 [..., {dt.width}, lanes] for {dt.name}, got {g.dtype} {g.shape}")
    rows = [g[..., k, :] for k in range(dt.width)]
    if byte_order == "big":
        rows = rows[::-1]
    acc = np.zeros(g.shape[:-2] + g.shape[-1:], np.uint32)
    for k, r in enumerate(rows):
        acc |= r.astype(np.uint32) << (8 * k)
    return acc.astype(_UINT[dt.width]).view(dt.np_dtype)


def pack(x: jax.Array, dtype: DType | str, byte_order: str = "little") -> jax.Array:
    """Typed vector `[..., lanes]` -> stream group `uint8 [..., w, lanes]` (jax; a bitcast and a transpose)."""
    dt = dtype_by_name(dtype) if isinstance(dtype, str) else dtype
    if dt.width == 1:
        return jax.lax.bitcast_convert_type(x, jnp.uint8)[..., None, :]
    b = jax.lax.bitcast_convert_type(x, jnp.uint8)  # [..., lanes, w], little-endian byte order
    if byte_order == "big":
        b = b[..., ::-1]
    return jnp.swapaxes(b, -1, -2)


def unpack_u16(g: jax.Array, byte_order: str = "little") -> jax.Array:
    """2-stream group `uint8 [..., 2, lanes]` -> `uint16 [..., lanes]` (lane maps, fp16 bit patterns)."""
    return jax.lax.bitcast_convert_type(unpack(g, "i16", byte_order), jnp.uint16)


def unpack(g: jax.Array, dtype: DType | str, byte_order: str = "little") -> jax.Array:
    """Stream group `uint8 [..., w, lanes]` -> typed vector `[..., lanes]` (jax; a transpose and a bitcast)."""
    dt = dtype_by_name(dtype) if isinstance(dtype, str) else dtype
    jdt = jnp.dtype(dt.np_dtype)
    if dt.width == 1:
        return jax.lax.bitcast_convert_type(g[..., 0, :], jdt)
    b = jnp.swapaxes(g, -1, -2)
    if byte_order == "big":
        b = b[..., ::-1]
    return jax.lax.bitcast_convert_type(b, jdt)

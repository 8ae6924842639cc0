"""Byte streams: pack/unpack round trips (numpy and jax) for every element type, bit for bit."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lpu_jax as L
from lpu_jax.dtypes import dtype_by_name

LANES = 32
SPECIAL = {
    "f32": [
        0x00000000,
        0x80000000,
        0x00000001,
        0x807FFFFF,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0x7F800001,
        0xFFBADBAD,
        0x7F7FFFFF,
    ],
    "f16": [0x0000, 0x8000, 0x0001, 0x83FF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFD55, 0x7BFF],
}


def _typed(name):
    dt = dtype_by_name(name)
    if dt.is_float:
        # arbitrary bit patterns (NaN payloads, -0.0, subnormals, infinities) plus the named specials
        u = np.dtype(f"u{dt.width}")
        bits = hnp.arrays(
            u, LANES, elements=st.one_of(st.sampled_from(SPECIAL[name]), st.integers(0, 2 ** (8 * dt.width) - 1))
        )
        return bits.map(lambda b: b.view(dt.np_dtype))
    info = np.iinfo(dt.np_dtype)
    return hnp.arrays(
        dt.np_dtype,
        LANES,
        elements=st.one_of(
            st.sampled_from([info.min, info.max, 0, -1 if info.min else 1]), st.integers(info.min, info.max)
        ),
    )


@functools.cache
def _jitted(name, order):
    return jax.jit(lambda v: L.pack(v, name, order)), jax.jit(lambda v: L.unpack(v, name, order))


def _bits(x):
    return x.view(f"u{x.dtype.itemsize}")


@pytest.mark.parametrize("name", [d.name for d in L.DTYPES])
@pytest.mark.parametrize("order", ["little", "big"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_bit_exact(name, order, data):
    x = data.draw(_typed(name))
    w = dtype_by_name(name).width
    g = L.pack_np(x, name, order)
    assert g.dtype == np.uint8 and g.shape == (w, LANES)
    np.testing.assert_array_equal(_bits(L.unpack_np(g, name, order)), _bits(x))
    pack, unpack = _jitted(name, order)
    np.testing.assert_array_equal(np.asarray(pack(x)), g)  # jax and numpy agree on the layout
    back = np.asarray(unpack(g))
    np.testing.assert_array_equal(_bits(back), _bits(x))


def test_layout_is_little_endian_byte_k_on_stream_k():
    x = np.array([0x11223344, -1], np.int32)
    g = L.pack_np(x, "i32")
    np.testing.assert_array_equal(g[:, 0], [0x44, 0x33, 0x22, 0x11])
    np.testing.assert_array_equal(L.pack_np(x, "i32", "big")[:, 0], [0x11, 0x22, 0x33, 0x44])
    assert L.pack_np(np.float16([1.0]), "f16")[:, 0].tolist() == [0x00, 0x3C]


def test_widths():
    assert {d.name: d.width for d in L.DTYPES} == {"i8": 1, "u8": 1, "i16": 2, "i32": 4, "f16": 2, "f32": 4}


def test_bad_input_is_rejected():
    with pytest.raises(TypeError, match="expected float32"):
        L.pack_np(np.zeros(4, np.float64), "f32")
    with pytest.raises(ValueError, match="unknown element type 'f64'"):
        L.pack_np(np.zeros(4, np.float32), "f64")
    with pytest.raises(ValueError, match=r"expected uint8 \[..., 4, lanes\]"):
        L.unpack_np(np.zeros((2, 4), np.uint8), "f32")

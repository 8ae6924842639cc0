"""Where a matrix lives in MEM: `TensorLayout`, and a bump allocator of MEM words per slice.

A matrix [R, C] of element type T (width w bytes) is stored as vectors: row r, column tile t (columns
t*L .. t*L + L - 1, L = n_lanes; the last tile is zero-padded) and byte b (0..w-1: the byte that rides on stream
base + b of a w-stream group, so in the config's group byte order) is one L-byte MEM word at
(`slice[r, t, b]`, `addr[r, t, b]`). `place` writes a matrix into a MEM image and `read` takes it back; both are
plain numpy, independent of the simulator.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import ChipConfig
from ..dtypes import dtype_by_name, pack_np, unpack_np

__all__ = ["Allocator", "CapacityError", "TensorLayout"]


class CapacityError(ValueError):
    """The operands of a kernel do not fit the chip's SRAM (the message names the slice and the sizes)."""


@dataclasses.dataclass
class TensorLayout:
    """A matrix in MEM. `slice`, `addr`: int32 [R, T, w] (MEM slice index west to east, word address)."""

    shape: tuple[int, int]
    dtype: str
    slice: np.ndarray
    addr: np.ndarray

    @property
    def tiles(self) -> int:
        return self.slice.shape[1]

    def place(self, cfg: ChipConfig, mem: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Write matrix `x` (shape `self.shape`, numpy dtype of `self.dtype`) into the MEM image `mem`
        (uint8 [M, mem_words, L], changed in place and returned), zero-padding the last column tile."""
        dt = dtype_by_name(self.dtype)
        x = np.asarray(x)
        if x.shape != tuple(self.shape) or x.dtype != dt.np_dtype:
            raise ValueError(f"expected {dt.np_dtype} {tuple(self.shape)}, got {x.dtype} {x.shape}")
        R, C = self.shape
        L = cfg.n_lanes
        pad = np.zeros((R, self.tiles * L), dt.np_dtype)
        pad[:, :C] = x
        g = pack_np(pad.reshape(R, self.tiles, L), dt, cfg.group_byte_order)  # [R, T, w, L]
        mem[self.slice, self.addr] = g
        return mem

    def read(self, cfg: ChipConfig, mem: np.ndarray) -> np.ndarray:
        """The matrix as stored in the MEM image `mem` (uint8 [M, mem_words, L])."""
        dt = dtype_by_name(self.dtype)
        R, C = self.shape
        g = np.asarray(mem)[self.slice, self.addr]  # [R, T, w, L]
        return unpack_np(g, dt, cfg.group_byte_order).reshape(R, -1)[:, :C]


class Allocator:
    """Hands out MEM words slice by slice, lowest address first."""

    def __init__(self, cfg: ChipConfig, start: np.ndarray | None = None):
        self.cfg = cfg
        self.next = np.zeros(cfg.n_mem, np.int64) if start is None else np.asarray(start, np.int64).copy()

    def take(self, s: int, n: int, what: str) -> int:
        """n consecutive words in slice s; returns the first address."""
        a = int(self.next[s])
        if a + n > self.cfg.mem_words:
            raise CapacityError(
                f"{what} needs {n} more words in MEM slice {self.cfg.mem_names[s]}, which has "
                f"{self.cfg.mem_words - a} of {self.cfg.mem_words} left ({self.cfg.name}: "
                f"{self.cfg.n_mem} slices x {self.cfg.mem_words} words x {self.cfg.n_lanes} B)"
            )
        self.next[s] = a + n
        return a

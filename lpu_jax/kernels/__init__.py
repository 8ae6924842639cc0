"""Kernel generators: programs for the chip with their memory layouts and cycle counts (layer 5).

gemm(cfg, M, K, N, dtype)      C = A @ B on the MXM, int8 -> int32 or fp16 -> fp32
transpose(cfg, R, C)           a byte matrix transposed in MEM through the SXM
Kernel, run_kernel             what a generator returns; run it on the simulator
Timeline                       instructions at exact cycles -> a Program with NOPs and Repeats
TensorLayout, CapacityError    where a matrix lives in MEM; too big for the SRAM
"""

from .base import Kernel, run_kernel
from .gemm import gemm
from .layout import Allocator, CapacityError, TensorLayout
from .timeline import Timeline, TimelineError
from .transpose import transpose

__all__ = [
    "Allocator",
    "CapacityError",
    "Kernel",
    "TensorLayout",
    "Timeline",
    "TimelineError",
    "gemm",
    "run_kernel",
    "transpose",
]

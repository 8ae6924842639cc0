"""lpu_jax.golden: a second, independent implementation of the ISA (docs/golden.md).

`Interp` is a plain, loop-based numpy interpreter written from the documents (docs/isa.md, docs/model.md,
docs/mxm.md, docs/mxm_math.md, docs/sxm.md, docs/fpmath.md), not from the JAX simulator. It imports only the
configuration, the ISA's program format (`lpu_jax.isa`) and the independent numpy float semantics of
`lpu_jax.reference.chipnum`; never the simulator, the units, the state or `fpmath`/`dotmath`.
"""

from .interp import HAZARD_KINDS, TRACE_FIELDS, Difference, Interp, compare_traces, run_program

__all__ = ["HAZARD_KINDS", "TRACE_FIELDS", "Difference", "Interp", "compare_traces", "run_program"]

"""all-MiniLM-L6-v2 sentence embeddings computed on the simulated chip.

    emb = ChipEmbedder("fp16", seq_len=16)          # compiles the whole model once for this sequence length
    vectors, runs = emb.embed(["A sentence.", "Another one."])
    print(emb.report())

The model is `lpu_jax.reference.sentence_embedding` (encoder, mean pooling over real tokens, L2 normalisation)
with MiniLM's weights prepared for the policy (`prepare_params`; int8 calibrated on `minilm.CALIBRATION`), and
the tanh GELU: the chip has no erf. `compile_fn` lowers it, every sentence runs as one program on the
cycle-level simulator, and every number of the embedding is made by the program.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .compiler import compile_fn
from .config import ChipConfig, groqchip1
from .reference import minilm
from .reference import models as M

__all__ = ["ChipEmbedder", "minilm_params"]


def minilm_params(policy: str, layers: int | None = None):
    """(EncoderConfig, parameters prepared for `policy`) of MiniLM: the true model (erf GELU) for fp32, the tanh
    GELU for the chip's policies; `layers` keeps the first few layers only (a smaller model for quick runs)."""
    cfg, params = minilm.load_minilm("erf" if policy == "fp32" else "tanh")
    if layers is not None:
        if not 1 <= layers <= cfg.layers:
            raise ValueError(f"layers must be in 1..{cfg.layers}, got {layers}")
        cfg = dataclasses.replace(cfg, layers=layers)
        params = {k: v for k, v in params.items() if not k.startswith("layer_") or int(k[6:]) < layers}
    scales = None
    if policy == "int8":
        ids, mask = minilm.encode(minilm.CALIBRATION, minilm.CALIBRATION_SEQ_LEN)
        scales = M.calibrate(params, cfg, zip(ids, mask))
    M.check_policy(cfg, policy)
    return cfg, M.prepare_params(params, cfg, policy, scales)


@dataclasses.dataclass
class Run:
    """One sentence on the chip."""

    sentence: str
    tokens: int
    wall_seconds: float
    hazards: int


class ChipEmbedder:
    """MiniLM compiled for one policy, sequence length and chip configuration."""

    def __init__(self, policy: str = "fp16", seq_len: int = 16, cfg: ChipConfig | None = None, layers=None):
        if policy not in ("fp16", "int8"):
            raise ValueError(f"policy must be fp16 or int8 on the chip, got {policy!r}")
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
        self.policy, self.seq_len, self.cfg, self.layers = policy, int(seq_len), cfg or groqchip1(), layers
        self.model_cfg, self.params = minilm_params(policy, layers)
        mcfg = self.model_cfg

        def fn(p, ids, mask):
            return M.sentence_embedding(p, mcfg, ids, mask, policy)

        ids = np.zeros(self.seq_len, np.int32)
        self.compiled = compile_fn(fn, self.params, ids, np.ones_like(ids), cfg=self.cfg)

    def embed(self, sentences) -> tuple[np.ndarray, list[Run]]:
        """float32 [n, 384] embeddings of the sentences, each computed by one run of the program. A sentence
        longer than seq_len tokens raises ValueError (from `minilm.encode`)."""
        from .state import hazard_report

        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        ids, mask = minilm.encode(sentences, self.seq_len)
        out, runs = [], []
        for s, i, m in zip(sentences, ids, mask):
            t0 = time.perf_counter()
            v, state = self.compiled.run(i, m)
            runs.append(Run(s, int(m.sum()), time.perf_counter() - t0, len(hazard_report(self.cfg, state))))
            out.append(np.asarray(v))
        return np.stack(out), runs

    def reference(self, sentences, policy: str = "fp32") -> np.ndarray:
        """The flax model's embeddings of the same sentences and layers (fp32: the true model, erf GELU)."""
        cfg, params = minilm_params(policy, self.layers)
        ids, mask = minilm.encode([sentences] if isinstance(sentences, str) else list(sentences), self.seq_len)
        return np.asarray(M.embed_batch(params, cfg, ids, mask, policy))

    def report(self):
        return self.compiled.report()

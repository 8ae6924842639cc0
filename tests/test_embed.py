"""MiniLM on the simulated groqchip1: `lpu_jax.embed.ChipEmbedder` and the `lpu-jax embed` / `lpu-jax demo`
commands, against the flax model. The runs on groqchip1 are `slow` (one layer about a minute and a half, the
full model minutes per sentence); the default run checks the errors. tests/test_compiler_models.py compiles the
same model code at small sizes in the default run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lpu_jax.cli import main
from lpu_jax.embed import ChipEmbedder
from lpu_jax.reference import minilm

SENTENCES = (
    "The weather is lovely today.",
    "He plays the violin in an orchestra.",
    "Quantum computers use qubits.",
    "My favourite food is pasta with tomato sauce.",
    "The train to Paris leaves at noon.",
    "Dogs are loyal animals.",
    "Stock markets fell sharply on Monday.",
    "She wrote a letter to her grandmother.",
)


def test_embed_errors_are_one_line_before_compiling(capsys):
    long = " ".join(["word"] * 40)
    assert main(["embed", long, "--seq-len", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpu-jax embed: error:") and "8" in err[0], err
    assert main(["embed", "hello", "--layers", "7"]) == 2
    assert capsys.readouterr().err.strip() == "lpu-jax embed: error: layers must be in 1..6, got 7"
    assert main(["demo", "--sentences", "9"]) == 2
    assert capsys.readouterr().err.strip() == "lpu-jax demo: error: --sentences must be in 1..4, got 9"
    with pytest.raises(SystemExit):
        main(["embed", "hello", "--policy", "fp32"])


@pytest.mark.slow
def test_embed_one_layer_writes_json(tmp_path, capsys):
    """`lpu-jax embed` on the first MiniLM layer: the embedding printed and written is the chip's, and agrees
    with the flax fp32 model of the same layer."""
    path = tmp_path / "e.json"
    assert main(["embed", "The cat sat.", "--layers", "1", "--seq-len", "8", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cycles" in out and "cosine vs flax fp32" in out
    res = json.loads(path.read_text())
    v = np.asarray(res["embeddings"], np.float32)
    assert v.shape == (1, 384) and abs(np.linalg.norm(v) - 1) < 1e-5
    assert res["cosine_vs_fp32_reference"][0] >= 0.9999
    assert res["report"]["cycles"] > 0 and res["hazards"] == [0]


@pytest.mark.slow
@pytest.mark.parametrize("policy,bound", [("fp16", 0.9999), ("int8", 0.99)])
def test_minilm_on_the_chip_agrees_with_flax(policy, bound):
    """The whole six-layer MiniLM on groqchip1, 8 varied sentences, against the flax fp32 model (erf GELU)."""
    emb = ChipEmbedder(policy, seq_len=16)
    vecs, runs = emb.embed(SENTENCES)
    ref = minilm.embed_reference(SENTENCES, 16, "fp32")
    cos = np.sum(vecs * ref, axis=1)
    print(f"MiniLM {policy} on groqchip1 vs flax fp32, cosines: {np.round(cos, 7).tolist()}")
    assert all(r.hazards == 0 for r in runs)
    assert cos.min() >= bound, cos


@pytest.mark.slow
def test_demo_runs(capsys):
    assert main(["demo"]) == 0
    assert "agreement" in capsys.readouterr().out

"""The reference transformers (`lpu_jax.reference.models`) compiled for the chip, against chipnum's evaluation of
the same jaxpr (docs/numerics.md): attention, encoder layers, embeddings, decoding.

The models are small (`small` config: 32 lanes) but have every structure of MiniLM: heads that split the lanes,
a hidden size of two lane tiles, padding tokens masked in the attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_compiler import CFG, LANES, assert_bits_equal, chip_run

from lpu_jax.reference import chipnum
from lpu_jax.reference import models as M

T = 8


def encoder_cfg(layers=1):
    return M.EncoderConfig(vocab_size=40, max_len=16, hidden=64, heads=4, ffn=96, layers=layers)


def prepared(policy, cfg, seed=0):
    params = M.init_encoder(jax.random.key(seed), cfg)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (4, T)).astype(np.int32)
    mask = np.ones((4, T), np.int32)
    mask[1, 5:] = 0
    scales = M.calibrate(params, cfg, zip(ids, mask)) if policy == "int8" else None
    return M.prepare_params(params, cfg, policy, scales)


def attention_fn(cfg, policy):
    def fn(p, x, mask):
        return M.SelfAttention(cfg.hidden, cfg.heads, policy).apply({"params": p}, x, M.padding_bias(mask))

    return fn


@pytest.mark.parametrize("policy", ["int8", "fp16"])
def test_self_attention(policy):
    """q.k^T per head with Q^T made by a transpose on the chip, the softmax over keys in the transposed layout,
    probabilities times V^T per head, the context transposed back for the output projection."""
    cfg = encoder_cfg()
    p = prepared(policy, cfg)["layer_0"]["attention"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, cfg.hidden)).astype(np.float32)
    mask = np.array([1] * 6 + [0] * 2, np.int32)  # two padding keys
    fn = attention_fn(cfg, policy)
    c, out = chip_run(fn, p, x, mask)
    want = chipnum.run(fn, p, x, mask, lanes=LANES)
    if policy == "int8":
        assert_bits_equal(out, want, "int8 self-attention")
    else:
        rel = np.linalg.norm(out - want) / np.linalg.norm(want)
        assert rel <= 1e-3, rel
    # and it is attention: close to the fp32 model
    p32 = prepared("fp32", cfg)["layer_0"]["attention"]
    ref = attention_fn(cfg, "fp32")(p32, x, mask)
    rel32 = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel32 < (0.1 if policy == "int8" else 1e-3), rel32
    kinds = {o.kind for o in c.schedule.ops}
    assert {"transpose", "matmul"} <= kinds


@pytest.mark.parametrize("vocab,hidden", [(40, 64), (1100, 32)])
def test_embedding_lookup(vocab, hidden):
    """jnp.take(table, ids, mode="clip") by MEM Gathers with addresses computed on the chip from the ids; with
    1100 rows the table is in two chunks (small's slices hold 1024 words): both are gathered and ORed."""
    rng = np.random.default_rng(2)
    p = {"word": rng.standard_normal((vocab, hidden)).astype(np.float32)}
    ids = np.array([0, vocab - 1, 3, vocab + 5, -2, 1021, 1022, 1023], np.int32)  # clamped when out of range
    fn = lambda p, ids: jnp.take(p["word"], ids, axis=0, mode="clip") * 2.0  # noqa: E731
    c, out = chip_run(fn, p, ids)
    want = p["word"][np.clip(ids, 0, vocab - 1)] * 2.0
    assert_bits_equal(out, want, "embedding lookup")
    assert any(o.kind == "gather" and o.detail["chunks"] == (1 if vocab < 1000 else 2) for o in c.schedule.ops)


@pytest.mark.parametrize("policy", ["int8", "fp16"])
def test_sentence_embedding(policy):
    """The whole encoder (embeddings, two layers, mean pooling over real tokens, L2 normalisation) on the chip:
    it fits the small config's 512 KiB only because temporaries' words are reused."""
    cfg = encoder_cfg(layers=2)
    p = prepared(policy, cfg)
    ids = np.array([2, 17, 5, 39, 11, 0, 0, 0], np.int32)
    mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.int32)
    fn = lambda p, ids, mask: M.sentence_embedding(p, cfg, ids, mask, policy)  # noqa: E731
    c, out = chip_run(fn, p, ids, mask)
    want = chipnum.run(fn, p, ids, mask, lanes=LANES)
    if policy == "int8":
        assert_bits_equal(out, want, "int8 sentence embedding")
    else:
        rel = np.linalg.norm(out - want) / np.linalg.norm(want)
        assert rel <= 1e-3, rel
    ref = M.sentence_embedding(prepared("fp32", cfg), cfg, ids, mask, "fp32")
    assert float(np.dot(out, ref)) > (0.99 if policy == "int8" else 0.9999)


def test_token_and_position_lookup_with_scalar_inputs():
    """The decoder's embedding of one token at a computed position: jnp.take with a scalar token and
    lax.dynamic_slice of the position table at a scalar position (both clamp)."""
    rng = np.random.default_rng(3)
    p = {"word": rng.standard_normal((40, 64)).astype(np.float32), "pos": rng.standard_normal((16, 64)).astype(np.float32)}

    def fn(p, token, pos):
        ids = jnp.reshape(token, (1,))
        return jnp.take(p["word"], ids, axis=0, mode="clip") + jax.lax.dynamic_slice(p["pos"], (pos, 0), (1, 64))

    for token, pos in ((np.int32(7), np.int32(3)), (np.int32(99), np.int32(20))):
        _, out = chip_run(fn, p, token, pos)
        want = p["word"][min(int(token), 39)][None] + p["pos"][min(int(pos), 15)][None]
        assert_bits_equal(out, want, "token + position")

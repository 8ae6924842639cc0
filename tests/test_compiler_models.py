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
    p = {
        "word": rng.standard_normal((40, 64)).astype(np.float32),
        "pos": rng.standard_normal((16, 64)).astype(np.float32),
    }

    def fn(p, token, pos):
        ids = jnp.reshape(token, (1,))
        return jnp.take(p["word"], ids, axis=0, mode="clip") + jax.lax.dynamic_slice(p["pos"], (pos, 0), (1, 64))

    for token, pos in ((np.int32(7), np.int32(3)), (np.int32(99), np.int32(20))):
        _, out = chip_run(fn, p, token, pos)
        want = p["word"][min(int(token), 39)][None] + p["pos"][min(int(pos), 15)][None]
        assert_bits_equal(out, want, "token + position")


def decoder_setup(policy, layers=1, seed=0):
    cfg = M.DecoderConfig(vocab_size=40, max_len=20, hidden=64, heads=4, ffn=96, layers=layers)
    params = M.init_decoder(jax.random.key(seed), cfg)
    scales = None
    if policy == "int8":
        rng = np.random.default_rng(seed)
        scales = M.calibrate(params, cfg, [rng.integers(0, 40, 12).astype(np.int32) for _ in range(4)])
    return cfg, M.prepare_params(params, cfg, policy, scales)


def chip_greedy(cfg, p, policy, prompt, steps):
    """Greedy decoding on the chip: one program per token (decode_step and the argmax), the KV cache left in
    SRAM from run to run; only the token and the position are placed anew."""
    from lpu_jax.compiler import compile_fn
    from lpu_jax.state import hazard_report, mem_image

    def step(p, k, v, token, pos):
        logits, cache = M.decode_step(p, cfg, M.KVCache(k, v), token, pos, policy)
        return jnp.argmax(logits).astype(jnp.int32), cache.k, cache.v

    cache = M.init_cache(cfg)
    k0, v0 = np.asarray(cache.k), np.asarray(cache.v)
    c = compile_fn(step, p, k0, v0, np.int32(0), np.int32(0), cfg=CFG)
    mem = c.mem_image(k0, v0, np.int32(prompt[0]), np.int32(0))
    out, feed = [], list(prompt)
    for pos in range(len(prompt) + steps - 1):
        (tok, _, _), state = c.run(mem=mem)
        assert not hazard_report(CFG, state)
        if pos >= len(prompt) - 1:
            out.append(int(tok))
            feed.append(int(tok))
        if pos + 1 < len(feed):
            mem = c.update_image(mem_image(CFG, state), {2: np.int32(feed[pos + 1]), 3: np.int32(pos + 1)})
    return out[:steps], c


@pytest.mark.parametrize(
    "policy,steps",
    [("int8", 2), pytest.param("int8", 16, marks=pytest.mark.slow), pytest.param("fp16", 16, marks=pytest.mark.slow)],
)
def test_greedy_decoding_with_the_kv_cache_in_sram(policy, steps):
    """The tokens the chip generates greedily equal the flax reference's (decode_step with its KV cache, argmax on
    the host); the chip's cache rows are written by Scatters at the computed position."""
    cfg, p = decoder_setup(policy)
    prompt = [3, 17]
    got, c = chip_greedy(cfg, p, policy, prompt, steps)
    assert got == M.greedy_generate(p, cfg, np.array(prompt, np.int32), steps, policy)
    assert any(o.kind == "scatter" for o in c.schedule.ops)

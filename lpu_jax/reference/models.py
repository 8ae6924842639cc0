"""Flax reference transformers: a BERT-style encoder and a GPT-style decoder, each in three numeric policies.

These models say what a chip program must compute (docs/numerics.md, docs/reference.md). A compiler traces them
with `jax.make_jaxpr` and `lpu_jax.reference.chipnum` re-evaluates the same jaxpr with chip numerics, so they are
written with a small, plain primitive vocabulary: `dot_general`, element-wise arithmetic, `exp`, `tanh`,
`rsqrt`, `select_n`, comparisons, conversions, `round`/`clamp`, sums and maxima over the last axis (and one sum
over tokens for mean pooling), `gather` for the embedding lookup, static slices, `dynamic_slice`,
`dynamic_update_slice` and `iota` for the KV cache. No library helpers (`jax.nn.*`, `jnp.mean`, flax layers),
which bring custom_jvp, erf or stop_gradient with them. The exact GELU (`gelu="erf"`) is the one exception,
allowed in the fp32 policy only: the chip has no erf.

One sequence, no batch axis (vmap on the host for batches). T tokens, D = hidden, H = heads, dh = D // H,
F = ffn, V = vocab_size, L = layers.

Encoder (BERT, post-LN)
  `encoder_forward(params, cfg, ids, mask, policy)`: ids int32 [T], mask int32 [T] (1 = token, 0 = padding)
  -> hidden float32 [T, D]. `sentence_embedding(...)` -> float32 [D]: mean pooling over the real tokens, then L2
  normalisation (sentence-transformers). `embed_batch(...)`: the same for ids, mask [n, T] -> [n, D].
Decoder (GPT-2, pre-LN, causal, learned positions, untied LM head without bias)
  `decoder_forward(params, cfg, ids, policy)`: ids int32 [T] -> logits float32 [T, V].
  `init_cache(cfg)` -> KVCache(k, v), each float32 [L, max_len, D], zeros.
  `decode_step(params, cfg, cache, token, pos, policy)`: token int32 [], pos int32 [] -> (logits float32 [V],
  cache with row `pos` of every layer's K and V written).
  `greedy_generate(params, cfg, prompt_ids, steps, policy)` -> the `steps` new tokens, list[int].

Policies (docs/numerics.md, section Policies)
  "fp32"  the plain model; matmuls at `Precision.HIGHEST` (no TF32 on GPUs).
  "fp16"  every matmul operand float16 (kernels stored as float16 by `prepare_params`), fp32 accumulation.
  "int8"  int8 kernels with one scale per output channel, int8 activations with static scales from `calibrate`
          (a Dense input: one scale per input channel, SmoothQuant-style smoothing folded into the kernel; q, k,
          v and the probabilities: one per tensor), int32 accumulation, dequantised `f32(acc) * deq`; everything
          else fp32.
  `prepare_params(params, cfg, policy, scales)` turns fp32 parameters into the policy's parameters.

Parameter tree (fp32; a Dense is {"kernel": [K, N], "bias": [N]}, a LayerNorm {"scale": [D], "bias": [D]})
  encoder: embeddings/{word [V, D], position [max_len, D], type [type_vocab_size, D], ln}
           layer_{i}/attention/{query, key, value, out}, layer_{i}/attention_ln, layer_{i}/ffn_in [D, F],
           layer_{i}/ffn_out [F, D], layer_{i}/output_ln
  decoder: embeddings/{word [V, D], position [max_len, D]}
           layer_{i}/ln_1, layer_{i}/attention/{query, key, value, out}, layer_{i}/ln_2, layer_{i}/ffn_in,
           layer_{i}/ffn_out; ln_f; lm_head {"kernel": [D, V]}
  fp16: every "kernel" float16.  int8: every Dense {"kernel" int8 [K, N], "bias" [N], "deq" f32 [N] = s_x * s_w,
  "inv_sx" f32 [K] = 1 / (c * s_x)} (c: the smoothing factors, all 1 with smoothing=None); every attention also
  holds f32 scalars inv_sq, inv_sk, inv_sv, score_deq = s_q * s_k / sqrt(dh) and context_deq = s_v / 127.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

POLICIES = ("fp32", "fp16", "int8")
GELUS = ("tanh", "erf")
MASK_VALUE = -10000.0
"""Additive attention bias of a masked key (BERT's): exp(-10000 + s - max) is exactly 0 in fp32."""
PROB_SCALE = 127.0
"""int8 policy: softmax probabilities are quantised with the fixed scale 1/127, q = round(p * 127)."""
QMAX = 127.0
"""int8 policy: quantised values are saturated to [-127, 127] (symmetric; -128 is never produced)."""
ATTENTION_QUANT = ("inv_sq", "inv_sk", "inv_sv", "score_deq", "context_deq")
"""int8 policy: the scalar parameters of every attention (module docstring)."""

Params = Mapping[str, Any]

# ----------------------------------------------------------------------------------------------------------
# Configurations


@dataclasses.dataclass(frozen=True)
class _Dims:
    """The sizes every transformer here has (checked on construction)."""

    vocab_size: int
    max_len: int
    """Rows of the position table (the longest sequence) and, for the decoder, of the KV cache."""
    hidden: int
    heads: int
    ffn: int
    layers: int

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "hidden", "heads", "ffn", "layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.gelu not in GELUS:
            raise ValueError(f"gelu must be one of {GELUS}, got {self.gelu!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclasses.dataclass(frozen=True)
class EncoderConfig(_Dims):
    """A BERT-style encoder. Static (hashable): pass it to `jax.jit` as a static argument."""

    type_vocab_size: int = 2
    """Rows of the token-type table; the model adds row 0 (single-segment input) only."""
    ln_eps: float = 1e-12
    gelu: str = "tanh"
    """"tanh" (the approximation, every policy) or "erf" (exact, fp32 policy only)."""


@dataclasses.dataclass(frozen=True)
class DecoderConfig(_Dims):
    """A GPT-style decoder. Static (hashable): pass it to `jax.jit` as a static argument."""

    ln_eps: float = 1e-5
    gelu: str = "tanh"


def check_policy(cfg: EncoderConfig | DecoderConfig, policy: str) -> None:
    """Raise ValueError unless `policy` is known and allowed with `cfg` (exact GELU: fp32 only)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if cfg.gelu == "erf" and policy != "fp32":
        raise ValueError(
            f"gelu='erf' is allowed in the fp32 policy only (the chip has no erf); policy {policy!r} needs "
            "gelu='tanh' (dataclasses.replace(cfg, gelu='tanh'))"
        )


# ----------------------------------------------------------------------------------------------------------
# Element-wise building blocks (plain primitives only)


def quantize(x: jax.Array, inv_scale: jax.Array | float) -> jax.Array:
    """int8 of x / s given inv_scale = 1/s: round half to even, saturate to [-127, 127] (VXM conversion)."""
    r = lax.round(x * inv_scale, lax.RoundingMethod.TO_NEAREST_EVEN)
    return lax.clamp(jnp.float32(-QMAX), r, jnp.float32(QMAX)).astype(jnp.int8)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis, by hand: x [..., D], scale and bias [D]."""
    inv_d = 1.0 / x.shape[-1]
    mu = jnp.sum(x, axis=-1, keepdims=True) * inv_d
    xc = x - mu
    var = jnp.sum(xc * xc, axis=-1, keepdims=True) * inv_d
    return xc * lax.rsqrt(var + eps) * scale + bias


def gelu(x: jax.Array, kind: str) -> jax.Array:
    """GELU: "tanh" 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), or "erf" 0.5 x (1 + erf(x / sqrt(2)))."""
    if kind == "tanh":
        inner = 0.7978845608028654 * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1.0 + jnp.tanh(inner))
    if kind == "erf":
        return 0.5 * x * (1.0 + jax.scipy.special.erf(x * 0.7071067811865476))
    raise ValueError(f"gelu must be one of {GELUS}, got {kind!r}")


def softmax(s: jax.Array) -> jax.Array:
    """Softmax over the last axis, by hand (max-subtracted)."""
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def padding_bias(mask: jax.Array) -> jax.Array:
    """Additive attention bias [1, T] from mask int32 [T]: 0 for a real token, -10000 for padding."""
    return ((1.0 - mask.astype(jnp.float32)) * MASK_VALUE)[None, :]


def causal_bias(t: int) -> jax.Array:
    """Additive attention bias [T, T]: query row i sees keys 0..i."""
    row = lax.broadcasted_iota(jnp.int32, (t, t), 0)
    col = lax.broadcasted_iota(jnp.int32, (t, t), 1)
    return jnp.where(col <= row, jnp.float32(0.0), jnp.float32(MASK_VALUE))


def cache_bias(max_len: int, pos: jax.Array) -> jax.Array:
    """Additive attention bias [1, max_len] of the query at `pos` over the KV cache: keys 0..pos."""
    col = lax.iota(jnp.int32, max_len)
    return jnp.where(col <= pos, jnp.float32(0.0), jnp.float32(MASK_VALUE))[None, :]


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of hidden [T, D] over the real tokens of mask int32 [T] -> [D] (zero if the mask is empty)."""
    m = mask.astype(jnp.float32)
    total = jnp.sum(hidden * m[:, None], axis=0)
    count = jnp.sum(m, axis=-1, keepdims=True)
    return total / jnp.maximum(count, 1.0)


def l2_normalize(v: jax.Array) -> jax.Array:
    """v [..., D] / ||v|| over the last axis (a zero vector stays zero)."""
    return v * lax.rsqrt(jnp.maximum(jnp.sum(v * v, axis=-1, keepdims=True), 1e-24))


# ----------------------------------------------------------------------------------------------------------
# The policies: every matrix product of the models goes through these three functions.


def _expect_kernel(kernel: jax.Array, policy: str) -> None:
    want = {"fp32": jnp.float32, "fp16": jnp.float16, "int8": jnp.int8}[policy]
    if kernel.dtype != want:
        raise ValueError(
            f"policy {policy!r} needs {jnp.dtype(want).name} kernels, got {kernel.dtype}: convert fp32 "
            f"parameters with prepare_params(params, cfg, {policy!r}, scales)"
        )


def dense(x: jax.Array, p: Params, policy: str) -> jax.Array:
    """x float32 [T, K] @ kernel [K, N] (+ bias [N]) -> float32 [T, N], in `policy` (p: one Dense's params)."""
    kernel = p["kernel"]
    _expect_kernel(kernel, policy)
    if policy == "int8":
        acc = jnp.dot(quantize(x, p["inv_sx"]), kernel, preferred_element_type=jnp.int32)
        y = acc.astype(jnp.float32) * p["deq"]
    elif policy == "fp16":
        y = jnp.dot(x.astype(jnp.float16), kernel, preferred_element_type=jnp.float32)
    else:
        y = jnp.dot(x, kernel, precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    if "bias" in p:
        y = y + p["bias"]
    return y


def attention_scores(q: jax.Array, k: jax.Array, p: Params, policy: str, scale: float) -> jax.Array:
    """q [Tq, H, dh], k [Tk, H, dh] -> scale * q.k as float32 [H, Tq, Tk] (int8: p's quantisation scalars)."""
    if policy == "int8":
        acc = jnp.einsum(
            "qhd,khd->hqk", quantize(q, p["inv_sq"]), quantize(k, p["inv_sk"]), preferred_element_type=jnp.int32
        )
        return acc.astype(jnp.float32) * p["score_deq"]
    if policy == "fp16":
        s = jnp.einsum("qhd,khd->hqk", q.astype(jnp.float16), k.astype(jnp.float16), preferred_element_type=jnp.float32)
    else:
        s = jnp.einsum("qhd,khd->hqk", q, k, precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    return s * scale


def attention_context(probs: jax.Array, v: jax.Array, p: Params, policy: str) -> jax.Array:
    """probs [H, Tq, Tk], v [Tk, H, dh] -> probs @ v as float32 [Tq, H, dh] (int8: probs quantised by 1/127)."""
    if policy == "int8":
        acc = jnp.einsum(
            "hqk,khd->qhd", quantize(probs, PROB_SCALE), quantize(v, p["inv_sv"]), preferred_element_type=jnp.int32
        )
        return acc.astype(jnp.float32) * p["context_deq"]
    if policy == "fp16":
        return jnp.einsum(
            "hqk,khd->qhd", probs.astype(jnp.float16), v.astype(jnp.float16), preferred_element_type=jnp.float32
        )
    return jnp.einsum("hqk,khd->qhd", probs, v, precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# Modules


def _record(module: nn.Module, name: str, x: jax.Array) -> None:
    """Calibration: sow x [T, C] (one row per token) into "intermediates" when (and only when) that collection is
    mutable; `calibrate` reduces it to max|x| per channel over the real tokens."""
    if module.is_mutable_collection("intermediates"):
        module.sow("intermediates", name, x)


def _kernel_init(policy: str):
    if policy == "int8":
        return nn.initializers.zeros_init()
    return nn.initializers.normal(0.02)


_KERNEL_DTYPE = {"fp32": jnp.float32, "fp16": jnp.float16, "int8": jnp.int8}


class Dense(nn.Module):
    """y = x @ kernel + bias in the module's policy; declares the policy's parameters (module docstring)."""

    features: int
    policy: str = "fp32"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _record(self, "x", x)
        shape = (x.shape[-1], self.features)
        p = {"kernel": self.param("kernel", _kernel_init(self.policy), shape, _KERNEL_DTYPE[self.policy])}
        if self.use_bias:
            p["bias"] = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if self.policy == "int8":
            p["deq"] = self.param("deq", nn.initializers.ones_init(), (self.features,), jnp.float32)
            p["inv_sx"] = self.param("inv_sx", nn.initializers.ones_init(), (x.shape[-1],), jnp.float32)
        return dense(x, p, self.policy)


class LayerNorm(nn.Module):
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (d,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (d,), jnp.float32)
        return layer_norm(x, scale, bias, self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention: q, k, v and out projections with bias, softmax(q.k / sqrt(dh) + bias) v."""

    hidden: int
    heads: int
    policy: str = "fp32"

    def setup(self):
        self.query = Dense(self.hidden, self.policy)
        self.key = Dense(self.hidden, self.policy)
        self.value = Dense(self.hidden, self.policy)
        self.out = Dense(self.hidden, self.policy)
        if self.policy == "int8":
            self.quant = {n: self.param(n, nn.initializers.ones_init(), (), jnp.float32) for n in ATTENTION_QUANT}
        else:
            self.quant = {}

    def project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x [T, D] -> q, k, v, each [T, D]."""
        return self.query(x), self.key(x), self.value(x)

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        """q [Tq, D], k and v [Tk, D], additive bias broadcastable to [Tq, Tk] -> out(context) [Tq, D]."""
        _record(self, "q", q)
        _record(self, "k", k)
        _record(self, "v", v)
        dh = self.hidden // self.heads
        qh = q.reshape(q.shape[0], self.heads, dh)
        kh = k.reshape(k.shape[0], self.heads, dh)
        vh = v.reshape(v.shape[0], self.heads, dh)
        scores = attention_scores(qh, kh, self.quant, self.policy, 1.0 / math.sqrt(dh)) + bias
        context = attention_context(softmax(scores), vh, self.quant, self.policy)
        return self.out(context.reshape(q.shape[0], self.hidden))

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        return self.attend(*self.project(x), bias)


class EncoderEmbeddings(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids int32 [T] -> LN(word[ids] + type[0] + position[:T]) [T, D]."""
        cfg = self.cfg
        init = nn.initializers.normal(0.02)
        word = self.param("word", init, (cfg.vocab_size, cfg.hidden), jnp.float32)
        position = self.param("position", init, (cfg.max_len, cfg.hidden), jnp.float32)
        token_type = self.param("type", init, (cfg.type_vocab_size, cfg.hidden), jnp.float32)
        h = jnp.take(word, ids, axis=0, mode="clip") + token_type[0]
        h = h + position[: ids.shape[0]]
        return LayerNorm(cfg.ln_eps, name="ln")(h)


class EncoderLayer(nn.Module):
    """BERT layer (post-LN): x = LN(x + attention(x)); x = LN(x + ffn_out(gelu(ffn_in(x))))."""

    cfg: EncoderConfig
    policy: str = "fp32"

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.cfg
        a = SelfAttention(cfg.hidden, cfg.heads, self.policy, name="attention")(x, bias)
        x = LayerNorm(cfg.ln_eps, name="attention_ln")(x + a)
        h = gelu(Dense(cfg.ffn, self.policy, name="ffn_in")(x), cfg.gelu)
        f = Dense(cfg.hidden, self.policy, name="ffn_out")(h)
        return LayerNorm(cfg.ln_eps, name="output_ln")(x + f)


class Encoder(nn.Module):
    """BERT-style encoder: ids int32 [T], mask int32 [T] -> hidden float32 [T, D]."""

    cfg: EncoderConfig
    policy: str = "fp32"

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.cfg
        check_policy(cfg, self.policy)
        _check_tokens(ids, cfg.max_len)
        if mask.shape != ids.shape:
            raise ValueError(f"mask shape {mask.shape} differs from ids shape {ids.shape}")
        h = EncoderEmbeddings(cfg, name="embeddings")(ids)
        bias = padding_bias(mask)
        for i in range(cfg.layers):
            h = EncoderLayer(cfg, self.policy, name=f"layer_{i}")(h, bias)
        return h


@struct.dataclass
class KVCache:
    """The decoder's keys and values, written one row per position by `decode_step`."""

    k: jax.Array
    """float32 [L, max_len, D]: layer i's key projection of the token at position p is k[i, p]."""
    v: jax.Array
    """float32 [L, max_len, D]: the value projections, same layout."""

    def write(self, layer: int, pos: jax.Array, k: jax.Array, v: jax.Array) -> KVCache:
        """Store k, v [1, D] at row `pos` (int32 []) of `layer` (static)."""
        at = (layer, pos, 0)
        return KVCache(
            k=lax.dynamic_update_slice(self.k, k[None], at, allow_negative_indices=False),
            v=lax.dynamic_update_slice(self.v, v[None], at, allow_negative_indices=False),
        )


class DecoderLayer(nn.Module):
    """GPT-2 layer (pre-LN): x = x + attention(LN(x)); x = x + ffn_out(gelu(ffn_in(LN(x))))."""

    cfg: DecoderConfig
    policy: str = "fp32"

    @nn.compact
    def __call__(self, x, bias, cache: KVCache | None = None, pos=None, index: int = 0):
        """Full sequence (cache None): x [T, D] -> (x, None). One token: x [1, D] -> (x, cache with row pos)."""
        cfg = self.cfg
        attention = SelfAttention(cfg.hidden, cfg.heads, self.policy, name="attention")
        q, k, v = attention.project(LayerNorm(cfg.ln_eps, name="ln_1")(x))
        if cache is not None:
            cache = cache.write(index, pos, k, v)
            k, v = cache.k[index], cache.v[index]
        x = x + attention.attend(q, k, v, bias)
        h = gelu(Dense(cfg.ffn, self.policy, name="ffn_in")(LayerNorm(cfg.ln_eps, name="ln_2")(x)), cfg.gelu)
        return x + Dense(cfg.hidden, self.policy, name="ffn_out")(h), cache


class Decoder(nn.Module):
    """GPT-style decoder. ids int32 [T] -> logits [T, V]; or, with a cache, ids [1] at `pos` -> (logits, cache)."""

    cfg: DecoderConfig
    policy: str = "fp32"

    @nn.compact
    def __call__(self, ids: jax.Array, cache: KVCache | None = None, pos: jax.Array | None = None):
        cfg = self.cfg
        check_policy(cfg, self.policy)
        _check_tokens(ids, cfg.max_len)
        init = nn.initializers.normal(0.02)
        word = self.param("word", init, (cfg.vocab_size, cfg.hidden), jnp.float32)
        position = self.param("position", init, (cfg.max_len, cfg.hidden), jnp.float32)
        h = jnp.take(word, ids, axis=0, mode="clip")
        if cache is None:
            h = h + position[: ids.shape[0]]
            bias = causal_bias(ids.shape[0])
        else:
            h = h + lax.dynamic_slice(position, (pos, 0), (1, cfg.hidden), allow_negative_indices=False)
            bias = cache_bias(cfg.max_len, pos)
        for i in range(cfg.layers):
            h, cache = DecoderLayer(cfg, self.policy, name=f"layer_{i}")(h, bias, cache, pos, i)
        h = LayerNorm(cfg.ln_eps, name="ln_f")(h)
        logits = Dense(cfg.vocab_size, self.policy, use_bias=False, name="lm_head")(h)
        return logits if cache is None else (logits, cache)


def check_params(params: Params, policy: str) -> None:
    """Raise ValueError unless every kernel of `params` has the dtype of `policy` (a clear error, before flax's)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if getattr(path[-1], "key", None) == "kernel":
            try:
                _expect_kernel(leaf, policy)
            except ValueError as e:
                raise ValueError(f"{jax.tree_util.keystr(path)}: {e}") from None


def _check_tokens(ids: jax.Array, max_len: int) -> None:
    if ids.ndim != 1:
        raise ValueError(f"ids must be one sequence int32 [T] (no batch axis), got shape {ids.shape}")
    if ids.shape[0] > max_len:
        raise ValueError(f"{ids.shape[0]} tokens exceed max_len={max_len}")


# The decoder's parameters live under "embeddings" like the encoder's; the module declares them at its top
# level (the embedding lookup differs between the full sequence and one cached step), so they are moved.
def _decoder_to_module(params: Params) -> dict:
    tree = {k: v for k, v in params.items() if k != "embeddings"}
    tree.update(params["embeddings"])
    return tree


def _decoder_from_module(tree: Params) -> dict:
    params = {k: v for k, v in tree.items() if k not in ("word", "position")}
    params["embeddings"] = {"word": tree["word"], "position": tree["position"]}
    return params


# ----------------------------------------------------------------------------------------------------------
# Functional API


def _fill(key: jax.Array, shapes: Params) -> dict:
    """Parameters for an abstract tree: "bias" zeros, "scale" ones, every other leaf normal(0.02) (BERT, GPT-2).

    One `jax.random.normal` call draws all the values, sliced in tree order (eager per-leaf initialisers would
    compile once per shape)."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = [math.prod(leaf.shape) for _, leaf in leaves]
    draws = np.asarray(jax.random.normal(key, (sum(sizes),), jnp.float32)) * np.float32(0.02)
    out, start = [], 0
    for (path, leaf), size in zip(leaves, sizes):
        name = path[-1].key
        if name == "bias":
            value = np.zeros(leaf.shape, np.float32)
        elif name == "scale":
            value = np.ones(leaf.shape, np.float32)
        else:
            value = draws[start : start + size].reshape(leaf.shape)
            start += size
        out.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(tree, out)


def encoder_shapes(cfg: EncoderConfig) -> dict:
    """The encoder's fp32 parameter tree as jax.ShapeDtypeStruct leaves (nothing is computed)."""
    t = min(cfg.max_len, 2)
    args = (jnp.zeros((t,), jnp.int32), jnp.ones((t,), jnp.int32))
    return _unfreeze(jax.eval_shape(lambda: Encoder(cfg).init(jax.random.key(0), *args)["params"]))


def init_encoder(key: jax.Array, cfg: EncoderConfig) -> dict:
    """fp32 parameters of an encoder (BERT init: normal(0.02) matrices and tables, zero biases, unit LN scales).

    Eager (not traceable): the values are drawn with one jax.random call and laid out with numpy."""
    return _fill(key, encoder_shapes(cfg))


def encoder_forward(params: Params, cfg: EncoderConfig, ids: jax.Array, mask: jax.Array, policy: str = "fp32"):
    """ids int32 [T], mask int32 [T] -> hidden float32 [T, D] (params prepared for `policy`)."""
    check_policy(cfg, policy)
    check_params(params, policy)
    return Encoder(cfg, policy).apply({"params": params}, ids, mask)


def sentence_embedding(params: Params, cfg: EncoderConfig, ids: jax.Array, mask: jax.Array, policy: str = "fp32"):
    """ids, mask int32 [T] -> float32 [D]: the encoder, mean pooling over real tokens, L2 normalisation."""
    return l2_normalize(mean_pool(encoder_forward(params, cfg, ids, mask, policy), mask))


@functools.partial(jax.jit, static_argnames=("cfg", "policy"))
def embed_batch(params: Params, cfg: EncoderConfig, ids: jax.Array, mask: jax.Array, policy: str = "fp32"):
    """`sentence_embedding` of each row: ids, mask int32 [n, T] -> float32 [n, D] (jitted, vmapped)."""
    return jax.vmap(lambda i, m: sentence_embedding(params, cfg, i, m, policy))(ids, mask)


def decoder_shapes(cfg: DecoderConfig) -> dict:
    """The decoder's fp32 parameter tree as jax.ShapeDtypeStruct leaves (nothing is computed)."""
    ids = jnp.zeros((min(cfg.max_len, 2),), jnp.int32)
    return _decoder_from_module(_unfreeze(jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0), ids)["params"])))


def init_decoder(key: jax.Array, cfg: DecoderConfig) -> dict:
    """fp32 parameters of a decoder (GPT-2 init: normal(0.02) matrices and tables, zero biases, unit LN scales).

    Eager (not traceable), like `init_encoder`."""
    return _fill(key, decoder_shapes(cfg))


def decoder_forward(params: Params, cfg: DecoderConfig, ids: jax.Array, policy: str = "fp32") -> jax.Array:
    """ids int32 [T] -> logits float32 [T, V] (causal; params prepared for `policy`)."""
    check_policy(cfg, policy)
    check_params(params, policy)
    return Decoder(cfg, policy).apply({"params": _decoder_to_module(params)}, ids)


def init_cache(cfg: DecoderConfig) -> KVCache:
    """An empty KV cache: k and v float32 [L, max_len, D] zeros."""
    shape = (cfg.layers, cfg.max_len, cfg.hidden)
    return KVCache(k=jnp.zeros(shape, jnp.float32), v=jnp.zeros(shape, jnp.float32))


def decode_step(params: Params, cfg: DecoderConfig, cache: KVCache, token, pos, policy: str = "fp32"):
    """Feed `token` (int32 []) at position `pos` (int32 [], 0 <= pos < max_len) -> (logits float32 [V], cache).

    The cache must hold positions 0 .. pos-1; the result equals row `pos` of `decoder_forward` on the tokens.
    """
    check_policy(cfg, policy)
    check_params(params, policy)
    ids = jnp.reshape(jnp.asarray(token, jnp.int32), (1,))
    pos = jnp.asarray(pos, jnp.int32)
    logits, cache = Decoder(cfg, policy).apply({"params": _decoder_to_module(params)}, ids, cache, pos)
    return logits[0], cache


decode_step_jit = jax.jit(decode_step, static_argnames=("cfg", "policy"))
"""`decode_step` jitted (cfg and policy static); `greedy_generate` uses it, so its compilations are shared."""


def greedy_generate(params: Params, cfg: DecoderConfig, prompt_ids, steps: int, policy: str = "fp32") -> list[int]:
    """Greedy decoding with the KV cache: the `steps` tokens that follow `prompt_ids` (argmax on the host)."""
    prompt = [int(t) for t in np.asarray(prompt_ids).reshape(-1)]
    if not prompt:
        raise ValueError("greedy_generate needs a prompt of at least one token")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if len(prompt) + steps - 1 > cfg.max_len:
        raise ValueError(f"prompt ({len(prompt)} tokens) + {steps} steps do not fit max_len={cfg.max_len}")
    cache = init_cache(cfg)
    logits = None
    for pos, token in enumerate(prompt):
        logits, cache = decode_step_jit(params, cfg, cache, np.int32(token), np.int32(pos), policy)
    out: list[int] = []
    for i in range(steps):
        out.append(int(np.argmax(np.asarray(logits))))
        if i + 1 < steps:
            pos = len(prompt) + i
            logits, cache = decode_step_jit(params, cfg, cache, np.int32(out[-1]), np.int32(pos), policy)
    return out


# ----------------------------------------------------------------------------------------------------------
# Policies: calibration and parameter preparation


def _unfreeze(tree) -> dict:
    if isinstance(tree, Mapping):
        return {k: _unfreeze(v) for k, v in tree.items()}
    return tree


SMOOTHING = 0.8
"""int8 policy: the default migration strength alpha of the per-channel smoothing (`prepare_params`)."""
HEADROOM = 1.2
"""int8 policy with smoothing: a smoothed Dense input's scale is HEADROOM * its calibrated max|x| / 127. Smoothing
brings many channels near the top of the range, so an unseen input above a channel's calibrated maximum would
saturate; 1.2 costs a quarter of a bit (MiniLM, measured: fewer saturations outweigh it)."""


def _module_and_args(cfg, params: Params, sample) -> tuple[nn.Module, dict, tuple, jax.Array]:
    """The fp32 module, its parameter tree, its arguments and the rows (tokens) that count: 1.0 real, 0.0 padding."""
    if isinstance(cfg, EncoderConfig):
        ids, mask = (jnp.asarray(a, jnp.int32) for a in sample)
        return Encoder(cfg), dict(params), (ids, mask), mask.astype(jnp.float32)
    if isinstance(cfg, DecoderConfig):
        ids = jnp.asarray(sample, jnp.int32)
        return Decoder(cfg), _decoder_to_module(params), (ids,), jnp.ones(ids.shape, jnp.float32)
    raise TypeError(f"cfg must be an EncoderConfig or a DecoderConfig, got {type(cfg).__name__}")


@functools.partial(jax.jit, static_argnums=(0,))
def _channel_absmax(module: nn.Module, tree: Params, rows: jax.Array, *args):
    """The fp32 model's max|x| per channel of every quantised tensor over the rows that count: a tree of 1-tuples
    of float32 [C]."""
    _, state = module.apply({"params": tree}, *args, mutable=["intermediates"])
    keep = rows[:, None] > 0
    return jax.tree_util.tree_map(lambda x: jnp.max(jnp.where(keep, jnp.abs(x), 0.0), axis=0), state["intermediates"])


def calibrate(params: Params, cfg: EncoderConfig | DecoderConfig, sample_inputs: Iterable) -> dict:
    """Per-channel int8 scales s[c] = max|x[:, c]| / 127 over `sample_inputs`, from the fp32 model.

    params: fp32 parameters. sample_inputs: an iterable of model inputs, (ids, mask) pairs for an encoder
    (`zip(ids, mask)` of [n, T] arrays), ids arrays [T] for a decoder. Only real tokens count (an encoder's
    padding rows are left out: they never reach the sentence embedding). Returns a tree like the parameters':
    every Dense holds {"x": s_x [K]} (its input), every attention also {"q": s_q, "k": s_k, "v": s_v}, each
    [D]; the values are float32 numpy arrays, 0 for a channel that stayed zero. The per-tensor scale of a
    tensor is the maximum of its vector.
    """
    total = None
    for sample in sample_inputs:
        module, tree, args, rows = _module_and_args(cfg, params, sample)
        found = _channel_absmax(module, tree, rows, *args)
        total = found if total is None else jax.tree_util.tree_map(jnp.maximum, total, found)
    if total is None:
        raise ValueError("calibrate needs at least one sample input")
    total = jax.tree_util.tree_map(lambda t: t[0], _unfreeze(total), is_leaf=_is_tuple)
    return jax.tree_util.tree_map(lambda m: np.asarray(m, np.float32) / np.float32(QMAX), total)


def _is_tuple(t) -> bool:
    return isinstance(t, tuple)


def _tensor_scale(s: np.ndarray) -> np.float32:
    """The per-tensor scale of per-channel scales s: their maximum (1 for a tensor that stayed zero)."""
    m = np.float32(np.max(s))
    return m if m > 0 else np.float32(1.0)


def prepare_params(
    params: Params,
    cfg: EncoderConfig | DecoderConfig,
    policy: str,
    scales: Params | None = None,
    *,
    smoothing: float | None = SMOOTHING,
):
    """fp32 parameters -> the parameters of `policy` (module docstring). int8 needs `calibrate`'s scales.

    fp32: unchanged. fp16: every kernel converted to float16 (round to nearest even); `smoothing` plays no part.
    int8 (docs/reference.md, Policies), with a[k] = max|x[:, k]| the calibrated range of input channel k:
      smoothing = alpha in [0, 1] (default SMOOTHING = 0.8): every Dense input is smoothed per channel,
        x[:, k] / c[k] with c = max(a, median(a))^alpha / w^(1 - alpha), w[k] = max_n |kernel[k, n]|, and c
        folded into the kernel rows (SmoothQuant); s_x = HEADROOM * max_k(a[k] / c[k]) / 127. Every attention's
        v channels are first scaled by 1 / u, u = sqrt(max(s_v, median) / max s_v), and the out kernel's rows
        by u: a change of the fp32 parameters that leaves the fp32 model's function unchanged.
      smoothing = None: plain per-tensor activation scales (c = 1, s_x = max a / 127, no change to v).
    Then the kernel c W is quantised per output channel, s_w[n] = max_k |c[k] W[k, n]| / 127 (1 for an all-zero
    column), kernel_q = clip(round(c W / s_w), -127, 127) int8; deq = s_x * s_w [N], inv_sx = 1 / (c * s_x) [K]
    (float32), so that x @ W ~ (f32(quantize(x, inv_sx) @ kernel_q) * deq). Every attention gets the per-tensor
    inv_sq, inv_sk, inv_sv, score_deq = s_q s_k / sqrt(dh), context_deq = s_v / 127 (s = max over channels).
    """
    check_policy(cfg, policy)
    if policy == "int8" and scales is None:
        raise ValueError("the int8 policy needs scales: prepare_params(params, cfg, 'int8', calibrate(...))")
    if smoothing is not None and not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing (the migration strength alpha) must be in [0, 1] or None, got {smoothing}")
    return _prepare(params, scales, policy, cfg.head_dim, (), smoothing)


def _prepare(node: Params, scales, policy: str, head_dim: int, path: tuple, smoothing) -> dict:
    out = {}
    for name, value in node.items():
        here = path + (name,)
        if not isinstance(value, Mapping):
            out[name] = value
        elif "kernel" in value:
            a = _scale_at(scales, here, "x") if policy == "int8" else None
            out[name] = _prepare_dense(value, policy, here, a, smoothing)
        elif policy == "int8" and "query" in value:
            out[name] = _prepare_attention(value, scales, here, head_dim, smoothing)
        else:
            out[name] = _prepare(value, scales, policy, head_dim, here, smoothing)
    return out


def _scale_at(scales: Params, path: tuple, name: str) -> np.ndarray:
    node = scales
    for key in path + (name,):
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"no calibration scale for {'/'.join(path + (name,))}: run calibrate on this model")
        node = node[key]
    return np.asarray(node, np.float32)


def _fp32_kernel(p: Params, path: tuple) -> np.ndarray:
    kernel = np.asarray(p["kernel"])
    if kernel.dtype != np.float32:
        raise ValueError(f"{'/'.join(path)}/kernel is {kernel.dtype}: prepare_params takes fp32 parameters")
    return kernel


def _prepare_dense(p: Params, policy: str, path: tuple, a: np.ndarray | None, smoothing) -> dict:
    """One Dense in `policy`; int8: a = the calibrated scales of its input channels [K] (`calibrate`)."""
    kernel = _fp32_kernel(p, path)
    out = {k: v for k, v in p.items() if k != "kernel"}
    if policy == "fp32":
        out["kernel"] = p["kernel"]
    elif policy == "fp16":
        out["kernel"] = jnp.asarray(kernel.astype(np.float16))
    else:
        if a.shape != kernel.shape[:1]:
            raise ValueError(
                f"{'/'.join(path)}: calibration scales of shape {a.shape}, expected one per channel "
                f"{kernel.shape[:1]}: run calibrate on this model"
            )
        c = _smoothing(a, np.max(np.abs(kernel), axis=1), smoothing)
        s = _tensor_scale(a / c) * np.float32(1.0 if smoothing is None else HEADROOM)
        cw = (kernel * c[:, None]).astype(np.float32)
        col = np.max(np.abs(cw), axis=0)
        s_w = np.where(col > 0, col / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
        out["kernel"] = jnp.asarray(np.clip(np.round(cw / s_w), -QMAX, QMAX).astype(np.int8))
        out["deq"] = jnp.asarray((s * s_w).astype(np.float32))
        out["inv_sx"] = jnp.asarray((np.float32(1.0) / (c * s)).astype(np.float32))
    return out


def _smoothing(a: np.ndarray, w: np.ndarray, alpha: float | None) -> np.ndarray:
    """SmoothQuant's per-channel factors c = a'^alpha / w^(1 - alpha), float32 [K], with a' = max(a, median(a)):
    a channel quieter than the median is not blown up to the full range (its calibrated maximum is the least
    reliable, and an unseen input exceeding it would saturate). 1 where a or w is 0, all 1 for alpha None;
    normalised to a geometric mean of 1."""
    c = np.ones(a.shape, np.float64)
    ok = (a > 0) & (w > 0)
    if alpha is None or not ok.any():
        return c.astype(np.float32)
    a64, w64 = a[ok].astype(np.float64), w[ok].astype(np.float64)
    c[ok] = np.maximum(a64, np.median(a64)) ** alpha / w64 ** (1.0 - alpha)
    c[ok] /= np.exp(np.mean(np.log(c[ok])))
    return c.astype(np.float32)


def _scale_dense(p: Params, path: tuple, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> dict:
    """A Dense's fp32 parameters with kernel rows (inputs) multiplied by `rows`, columns and bias by `cols`."""
    kernel = _fp32_kernel(p, path).astype(np.float64)
    out = dict(p)
    if rows is not None:
        kernel = kernel * rows[:, None]
    if cols is not None:
        kernel = kernel * cols[None, :]
        if "bias" in p:
            out["bias"] = jnp.asarray((np.asarray(p["bias"], np.float64) * cols).astype(np.float32))
    out["kernel"] = jnp.asarray(kernel.astype(np.float32))
    return out


def _prepare_attention(p: Params, scales: Params, path: tuple, head_dim: int, smoothing) -> dict:
    s_q, s_k, s_v = (_scale_at(scales, path, n) for n in ("q", "k", "v"))
    s_ctx = _scale_at(scales, path + ("out",), "x")
    width = np.shape(p["value"]["kernel"])[1:]
    for name, s in (("q", s_q), ("k", s_k), ("v", s_v), ("out/x", s_ctx)):
        if s.shape != width:
            raise ValueError(
                f"{'/'.join(path)}/{name}: calibration scales of shape {s.shape}, expected one per channel "
                f"{width}: run calibrate on this model"
            )
    p = dict(p)
    if smoothing is not None:
        # v's channels brought halfway (geometrically) to the loudest one's range: v[:, d] / u[d] with
        # u = sqrt(max(s_v, median) / max s_v), and the out kernel's row d multiplied by u[d] (the context's
        # channel d is a mix of v's channel d, so it is divided by u[d] too). The fp32 function is unchanged.
        ok = s_v > 0
        u = np.ones(s_v.shape, np.float64)
        if ok.any():
            top = np.float64(np.max(s_v))
            u[ok] = np.sqrt(np.maximum(s_v[ok], np.median(s_v[ok])) / top)
        p["value"] = _scale_dense(p["value"], path + ("value",), cols=1.0 / u)
        p["out"] = _scale_dense(p["out"], path + ("out",), rows=u)
        s_v, s_ctx = (s_v / u).astype(np.float32), (s_ctx / u).astype(np.float32)
    out = {k: v for k, v in p.items() if k not in ("query", "key", "value", "out")}
    for name in ("query", "key", "value"):
        out[name] = _prepare_dense(p[name], "int8", path + (name,), _scale_at(scales, path + (name,), "x"), smoothing)
    out["out"] = _prepare_dense(p["out"], "int8", path + ("out",), s_ctx, smoothing)
    tq, tk, tv = (_tensor_scale(s) for s in (s_q, s_k, s_v))
    values = {
        "inv_sq": np.float32(1.0) / tq,
        "inv_sk": np.float32(1.0) / tk,
        "inv_sv": np.float32(1.0) / tv,
        "score_deq": np.float32(np.float64(tq) * np.float64(tk) / math.sqrt(head_dim)),
        "context_deq": tv / np.float32(PROB_SCALE),
    }
    out.update({n: jnp.asarray(np.float32(values[n])) for n in ATTENTION_QUANT})
    return out

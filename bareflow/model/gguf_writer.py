"""Write llama-architecture GGUF files with random weights (gguf.GGUFWriter), for tests and tools.

The weights are random (normal, scaled by 1/sqrt(fan-in) so activations stay of order one);
each matrix kind can have its own GGUF type.  Types gguf.quants can quantise (F32, F16, BF16,
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) are quantised from the random floats; the K-quants, which the
gguf package only dequantises, get random blocks with a small fp16 scale (their values are
whatever those bytes encode, which is all a test of the conversion path needs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import weightsfile as wf


@dataclass
class LlamaShape:
    dim: int = 64
    hidden_dim: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    vocab_size: int = 512
    context_length: int = 256
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tied: bool = False
    extra_kv: dict = field(default_factory=dict)


# Bytes per block and the offset of the fp16 super-block scale d, for random K-quant blocks.
_K_BLOCKS = {"Q6_K": (210, 208), "Q4_K": (144, 0), "Q5_K": (176, 0), "Q3_K": (110, 108), "Q2_K": (84, 80)}


def _encode(values, type_name: str, rng):
    import gguf
    qtype = gguf.GGMLQuantizationType[type_name]
    if type_name == "F32":
        return np.ascontiguousarray(values, np.float32), None
    if type_name == "F16":
        return np.ascontiguousarray(values, np.float16), None
    if type_name in _K_BLOCKS:
        size, d_off = _K_BLOCKS[type_name]
        rows, cols = values.shape
        raw = rng.integers(0, 256, size=(rows, cols // 256, size), dtype=np.uint8)
        d = np.full((rows, cols // 256), 0.002, np.float16).view(np.uint8).reshape(rows, cols // 256, 2)
        raw[..., d_off:d_off + 2] = d
        if type_name in ("Q4_K", "Q5_K"):        # dmin right after d: keep it small too
            raw[..., 2:4] = d
        return raw.reshape(rows, -1), qtype
    return gguf.quants.quantize(np.ascontiguousarray(values, np.float32), qtype), qtype


def write_llama_gguf(path, shape: LlamaShape, types=None, seed: int = 0, tokens=None, scores=None,
                     token_types=None, tokenizer_model: str = "llama", skip=(), arch: str = "llama"):
    """Write a GGUF v3 file.  types: {kind: GGUF type name} for matrices (default F32; norms are
    always F32).  tokens/scores/token_types: the vocabulary to store (default: none).  skip:
    metadata keys or tensor names to leave out (bad-input tests)."""
    import gguf
    types = types or {}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    a = arch + "."
    kv = {
        a + "block_count": shape.n_layers, a + "embedding_length": shape.dim,
        a + "feed_forward_length": shape.hidden_dim, a + "attention.head_count": shape.n_heads,
        a + "attention.head_count_kv": shape.n_kv_heads, a + "context_length": shape.context_length,
        a + "vocab_size": shape.vocab_size, a + "rope.dimension_count": shape.dim // shape.n_heads,
    }
    floats = {a + "rope.freq_base": shape.rope_theta, a + "attention.layer_norm_rms_epsilon": shape.rms_eps}
    for key, value in kv.items():
        if key not in skip:
            w.add_uint32(key, value)
    for key, value in floats.items():
        if key not in skip:
            w.add_float32(key, value)
    for key, value in shape.extra_kv.items():
        w.add_key_value(key, value[0], value[1])
    if tokens is not None:
        w.add_tokenizer_model(tokenizer_model)
        w.add_token_list(tokens)
        if scores is not None:
            w.add_token_scores(scores)
        if token_types is not None:
            w.add_token_types(token_types)
    cfg = wf.WeightsConfig(shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads,
                           shape.vocab_size, shape.context_length, shape.dim // shape.n_heads,
                           shape.dim // shape.n_heads, shape.rope_theta, shape.rms_eps, shape.tied)
    for kind, block, rows, cols in wf.tensor_order(cfg):
        name = wf.tensor_name(kind, block) + ".weight"
        if name in skip:
            continue
        if kind in wf.NORM_KINDS:
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(cols)).astype(np.float32))
            continue
        scale = 1.0 if kind == "token_embd" else 1.0 / np.sqrt(cols)
        values = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        data, qtype = _encode(values, types.get(kind, "F32"), rng)
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

"""llama2.c checkpoint reader: header validation, float32 weight views, per-layer costs.

The kernel trusts whatever this module accepts, so every check runs before a single weight is
touched and every failure names the file and the header field (docs/models.md lists the rules).
Weights are returned as read-only numpy views of a memory map: a TinyLlama checkpoint is
4.4 GB and the build only needs to look at its header and a few sizes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAMES

HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
HEADER_BYTES = 4 * len(HEADER_FIELDS)

# Upper bounds keep a corrupted header from implying absurd allocations in the kernel; they are
# far above TinyLlama (dim 2048, hidden 5632, 22 layers, 32 heads, vocab 32000, seq 2048).
MAXIMA = {
    "dim": 16384,
    "hidden_dim": 65536,
    "n_layers": 256,
    "n_heads": 1024,
    "n_kv_heads": 1024,
    "vocab_size": 1 << 20,
    "seq_len": 65536,
}


@dataclass(frozen=True)
class ModelConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int          # always positive; the sign in the file lives in shared_classifier
    seq_len: int
    shared_classifier: bool  # True: classifier = token embedding (header vocab_size > 0)

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def header_values(self) -> tuple:
        """The seven int32 as the file stores them (vocab negative for a separate classifier)."""
        vocab = self.vocab_size if self.shared_classifier else -self.vocab_size
        return (self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads,
                vocab, self.seq_len)

    def header_bytes(self) -> bytes:
        return struct.pack("<7i", *self.header_values())


def tensor_shapes(config: ModelConfig) -> list:
    """(name, shape) in file order after the header; wcls only for a separate classifier."""
    c = config
    L, d, h, v = c.n_layers, c.dim, c.hidden_dim, c.vocab_size
    shapes = [
        ("token_embedding_table", (v, d)),
        ("rms_att_weight", (L, d)),
        ("wq", (L, d, d)),
        ("wk", (L, c.kv_dim, d)),
        ("wv", (L, c.kv_dim, d)),
        ("wo", (L, d, d)),
        ("rms_ffn_weight", (L, d)),
        ("w1", (L, h, d)),
        ("w2", (L, d, h)),
        ("w3", (L, h, d)),
        ("rms_final_weight", (d,)),
        # Legacy RoPE tables: llama2.c's exporter still writes them, every reader skips them.
        ("freq_cis_real", (c.seq_len, c.head_size // 2)),
        ("freq_cis_imag", (c.seq_len, c.head_size // 2)),
    ]
    if not c.shared_classifier:
        shapes.append(("wcls", (v, d)))
    return shapes


def checkpoint_size(config: ModelConfig) -> int:
    """Exact file size the header implies, in bytes (Python ints: no overflow)."""
    floats = 0
    for _, shape in tensor_shapes(config):
        n = 1
        for s in shape:
            n *= s
        floats += n
    return HEADER_BYTES + 4 * floats


def _fail(path, msg):
    raise BareflowError(f"checkpoint {path}: {msg}")


def _config_from_header(path, values) -> ModelConfig:
    fields = dict(zip(HEADER_FIELDS, values))
    for name in HEADER_FIELDS:
        value = fields[name]
        if name == "vocab_size":
            if abs(value) < 2:
                # BOS is token id 1: a vocabulary without it cannot start a sequence.
                _fail(path, f"header says vocab_size={value}; it must be at least 2 in size, "
                            "since BOS is token id 1 (negative means a separate classifier)")
            value = abs(value)
        elif value <= 0:
            _fail(path, f"header says {name}={value}; it must be positive")
        if value > MAXIMA[name]:
            _fail(path, f"header says {name}={fields[name]}; the maximum is {MAXIMA[name]}")
    dim, n_heads, n_kv = fields["dim"], fields["n_heads"], fields["n_kv_heads"]
    if dim % n_heads:
        _fail(path, f"header says dim={dim}, n_heads={n_heads}; dim must be a multiple of n_heads")
    if n_heads % n_kv:
        _fail(path, f"header says n_heads={n_heads}, n_kv_heads={n_kv}; "
                    "n_heads must be a multiple of n_kv_heads")
    if (dim // n_heads) % 2:
        _fail(path, f"header says dim={dim}, n_heads={n_heads}: head_size={dim // n_heads} "
                    "is odd; RoPE rotates pairs, so n_heads must give an even head_size")
    return ModelConfig(dim=dim, hidden_dim=fields["hidden_dim"], n_layers=fields["n_layers"],
                       n_heads=n_heads, n_kv_heads=n_kv, vocab_size=abs(fields["vocab_size"]),
                       seq_len=fields["seq_len"], shared_classifier=fields["vocab_size"] > 0)


def read_config(path) -> ModelConfig:
    """Validate a checkpoint's header and exact size; return its config (weights untouched)."""
    p = Path(path)
    if not p.exists():
        _fail(path, "file does not exist")
    if not p.is_file():
        _fail(path, "not a regular file")
    size = p.stat().st_size
    if size < HEADER_BYTES:
        _fail(path, f"file has {size} bytes, smaller than the {HEADER_BYTES}-byte header "
                    f"({', '.join(HEADER_FIELDS)} as int32)")
    with open(p, "rb") as f:
        values = struct.unpack("<7i", f.read(HEADER_BYTES))
    config = _config_from_header(path, values)
    expected = checkpoint_size(config)
    if size != expected:
        kind = "shared" if config.shared_classifier else "separate"
        header = ", ".join(f"{k}={v}" for k, v in zip(HEADER_FIELDS, values))
        _fail(path, f"header says {header} ({kind} classifier): expected {expected} bytes, "
                    f"file has {size}")
    return config


@dataclass(frozen=True)
class Weights:
    """Read-only float32 numpy views, names and shapes as llama2.c's TransformerWeights."""
    token_embedding_table: object
    rms_att_weight: object
    wq: object
    wk: object
    wv: object
    wo: object
    rms_ffn_weight: object
    w1: object
    w2: object
    w3: object
    rms_final_weight: object
    freq_cis_real: object
    freq_cis_imag: object
    wcls: object             # the embedding table itself when the classifier is shared


def read_checkpoint(path):
    """Validate, then map the file: returns (ModelConfig, Weights)."""
    import numpy as np  # only here: the build reads headers and costs without numpy

    config = read_config(path)
    data = np.memmap(path, dtype="<f4", mode="r", offset=HEADER_BYTES)
    views, off = {}, 0
    for name, shape in tensor_shapes(config):
        n = 1
        for dim in shape:
            n *= dim
        views[name] = data[off:off + n].reshape(shape)
        off += n
    if config.shared_classifier:
        views["wcls"] = views["token_embedding_table"]
    return config, Weights(**views)


def layer_costs(config: ModelConfig, context: int | None = None, bytes_per_weight=None) -> dict:
    """Per-layer work for the tier policy: name -> (flops_per_call, weight_bytes_per_call,
    calls_per_token), in LAYER_NAMES order.

    FLOPs count 2 per multiply-add and 1 per other arithmetic op or comparison; exp, sqrt,
    sin/cos and division count 1 each (they cost more, but a policy only needs relative sizes).
    weight_bytes are the read-only operands a call streams from memory: weights, and for attn the
    float32 key/value cache it reads.  Weights count 4 bytes each (float32) unless
    `bytes_per_weight` ({layer name: bytes}, weights_build.weight_bytes_per_value) says what the
    weights file holds for that layer, e.g. 0.625 for Q4_1 or 1.0625 for Q8_0.  Attention grows with the position; `context` is the
    number of attended positions assumed (default: the mean over a full run, (seq_len+1)//2).
    The sampler is costed for greedy decoding (one comparison per logit).
    """
    c = config
    d, h, v, L, hs = c.dim, c.hidden_dim, c.vocab_size, c.n_layers, c.head_size
    kv = c.kv_dim
    t = (c.seq_len + 1) // 2 if context is None else int(context)
    if t < 1:
        raise BareflowError(f"layer_costs: context={context} must be at least 1")
    per = dict(bytes_per_weight or {})

    def wbytes(layer, weights):
        return int(round(per.get(layer, 4) * weights))

    costs = {
        # copy of one embedding row: no arithmetic, one row of the table read
        "embed": (0, wbytes("embed", d), 1),
        # sum of squares (2d), mean+eps+rsqrt (3), scale and gain (2d)
        "rmsnorm": (4 * d + 3, 4 * d, 2 * L + 1),
        # three matvecs: q (d x d), k and v (kv_dim x d)
        "qkv": (2 * d * (d + 2 * kv), wbytes("qkv", d * (d + 2 * kv)), L),
        # per rotated pair: 4 mul + 2 add, plus freq/angle/cos/sin (4); q has d/2 pairs, k kv/2
        "rope": ((6 + 4) * (d + kv) // 2, 0, L),
        # per head: scores t*hs MACs + scale t, softmax 4t, weighted sum t*hs MACs
        "attn": (c.n_heads * (4 * t * hs + 5 * t), 2 * 4 * t * kv, L),
        # wo matvec and the residual add
        "attnout": (2 * d * d + d, wbytes("attnout", d * d), L),
        # w1, w3 (h x d) and w2 (d x h) matvecs, SwiGLU (silu ~4 + product 1) per hidden unit,
        # residual add
        "ffn": (3 * 2 * d * h + 5 * h + d, wbytes("ffn", 3 * d * h), L),
        "classify": (2 * d * v, wbytes("classify", d * v), 1),
        "sampler": (v, 0, 1),
    }
    return {name: costs[name] for name in LAYER_NAMES}

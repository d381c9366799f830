"""GGUF checkpoints (llama architecture) read with llama.cpp's own `gguf` package.

read_gguf() checks everything the kernel relies on before anything is written: GGUF version 3,
general.architecture == llama, every hyperparameter key (docs/models.md lists them), the exact
set of tensors with the shapes the metadata implies, and that every tensor's bytes lie inside
the file.  Every failure is a BareflowError naming the file and the key or tensor.
convert() then turns the tensors into the kernel's types for the BareFlow weights file
(bareflow/model/weightsfile.py): F32, F16, Q4_0, Q4_1 and Q8_0 stay in their GGUF block layout,
anything else (K-quants, BF16, ...) is dequantised and requantised with gguf.quants.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace

from . import weightsfile as wf
from bareflow.errors import BareflowError

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
WEIGHTS_MODES = ("auto", "f32", "f16", "q8_0", "q4_0")
KERNEL_TYPES = frozenset(wf.TYPES)         # type names the layer modules run
DEFAULT_ROPE_THETA = 10000.0               # llama.cpp's default when rope.freq_base is absent


def is_gguf(path) -> bool:
    """True when the file starts with GGUF's magic (the extension is not trusted)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class GGUFModel:
    path: str
    config: wf.WeightsConfig
    context_length: int
    tensors: dict            # (kind, block) -> gguf.ReaderTensor
    reader: object


def _fail(path, msg):
    raise BareflowError(f"GGUF {path}: {msg}")


def _field(path, reader, key, kind, required=True, default=None):
    f = reader.fields.get(key)
    if f is None:
        if required:
            _fail(path, f"metadata key {key} is missing")
        return default
    try:
        value = f.contents()
    except Exception as exc:  # a malformed value is as bad as a missing one
        _fail(path, f"metadata key {key} cannot be read ({exc})")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(path, f"metadata key {key} = {value!r}, expected a positive integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1e30):
            _fail(path, f"metadata key {key} = {value!r}, expected a positive number")
        value = float(value)
    elif not isinstance(value, kind):
        _fail(path, f"metadata key {key} = {value!r}, expected {kind.__name__}")
    return value


def read_gguf(path, seq_len_cap: int | None = None) -> GGUFModel:
    """Validate a GGUF file and return its model (tensor bytes untouched).

    seq_len_cap: the SEQ_LEN variable; the file's seq_len is min(context_length, cap).
    Raises BareflowError naming the file and the key or tensor on any problem.
    """
    from . import inputs
    path = str(path)
    size = inputs.check_file(path, "MODEL")
    with open(path, "rb") as f:
        head = f.read(inputs.GGUF_HEADER_BYTES)
    if head[:4] != GGUF_MAGIC:
        _fail(path, "no GGUF magic at the start of the file")
    short = inputs.gguf_truncated_header(path, size, head)
    if short:
        raise BareflowError(short)
    version = struct.unpack("<I", head[4:8])[0]
    if version != GGUF_VERSION:
        _fail(path, f"GGUF version {version}; only version {GGUF_VERSION} is supported")
    from .tokenizer_v2 import gguf_reader     # one parsed reader per unchanged file, shared per build
    reader = gguf_reader(path)                # a damaged file: BareflowError naming tensor or truncation

    arch = _field(path, reader, "general.architecture", str)
    if arch != "llama":
        _fail(path, f"general.architecture = {arch!r}; only 'llama' runs on BareFlow")
    a = "llama."
    dim = _field(path, reader, a + "embedding_length", int)
    hidden = _field(path, reader, a + "feed_forward_length", int)
    n_layers = _field(path, reader, a + "block_count", int)
    n_heads = _field(path, reader, a + "attention.head_count", int)
    n_kv = _field(path, reader, a + "attention.head_count_kv", int)
    eps = _field(path, reader, a + "attention.layer_norm_rms_epsilon", float)
    context = _field(path, reader, a + "context_length", int)
    theta = _field(path, reader, a + "rope.freq_base", float, required=False, default=DEFAULT_ROPE_THETA)
    head_dim = _field(path, reader, a + "attention.key_length", int, required=False, default=None)
    if head_dim is None:
        if dim % n_heads:
            _fail(path, f"{a}embedding_length {dim} is not a multiple of {a}attention.head_count {n_heads}")
        head_dim = dim // n_heads
    rope_dim = _field(path, reader, a + "rope.dimension_count", int, required=False, default=head_dim)
    vlen = _field(path, reader, a + "attention.value_length", int, required=False, default=head_dim)
    if vlen != head_dim:
        _fail(path, f"{a}attention.value_length {vlen} differs from key_length {head_dim}; not supported")
    if n_heads % n_kv:
        _fail(path, f"{a}attention.head_count {n_heads} is not a multiple of head_count_kv {n_kv}")
    if head_dim % 2 or rope_dim % 2 or rope_dim > head_dim:
        _fail(path, f"{a}rope.dimension_count {rope_dim} must be even and at most the head size {head_dim}")
    if reader.fields.get(a + "rope.scaling.type") is not None and \
            reader.fields[a + "rope.scaling.type"].contents() not in ("none",):
        _fail(path, f"metadata key {a}rope.scaling.type = "
                    f"{reader.fields[a + 'rope.scaling.type'].contents()!r}; RoPE scaling is not supported")
    if a + "vocab_size" in reader.fields:
        vocab = _field(path, reader, a + "vocab_size", int)
    elif "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    else:
        _fail(path, f"metadata keys {a}vocab_size and tokenizer.ggml.tokens are both missing")
    if vocab < 2:
        _fail(path, f"vocab_size {vocab}: BOS needs token id 1")
    for key, value, limit in (("embedding_length", dim, 1 << 16), ("feed_forward_length", hidden, 1 << 18),
                              ("block_count", n_layers, 1024), ("attention.head_count", n_heads, 1024),
                              ("vocab_size", vocab, 1 << 20), ("attention.key_length", head_dim, 1 << 12)):
        if value > limit:
            _fail(path, f"{a}{key} = {value} exceeds the kernel's limit {limit}")

    tensors = {}
    for t in reader.tensors:
        kind, block = _tensor_key(path, t.name, n_layers)
        if (kind, block) in tensors:
            _fail(path, f"tensor {t.name} appears twice")
        if t.data_offset + t.n_bytes > size:
            _fail(path, f"tensor {t.name}: {t.n_bytes} bytes at offset {t.data_offset} run past the end of "
                        f"the {size}-byte file (truncated)")
        tensors[(kind, block)] = t
    shared = ("output", None) not in tensors
    seq_len = min(context, seq_len_cap) if seq_len_cap else context
    cfg = wf.WeightsConfig(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, head_dim, rope_dim,
                           theta, eps, shared)
    for kind, block, rows, cols in wf.tensor_order(cfg):
        name = wf.tensor_name(kind, block) + ".weight"
        t = tensors.get((kind, block))
        if t is None:
            _fail(path, f"tensor {name} is missing")
        want = [cols] if kind in wf.NORM_KINDS else [cols, rows]
        got = [int(n) for n in t.shape]
        while len(got) > len(want) and got[-1] == 1:
            got.pop()
        if got != want:
            _fail(path, f"tensor {name} has shape {got} (ggml order), the metadata implies {want}")
        if t.tensor_type.name not in KERNEL_TYPES and cols % 32:
            _fail(path, f"tensor {name} of type {t.tensor_type.name} has {cols} columns, not a multiple of 32")
    if len(tensors) != len(wf.tensor_order(cfg)):
        _fail(path, "holds tensors the metadata does not account for")
    return GGUFModel(path, cfg, context, tensors, reader)


def _tensor_key(path, name, n_layers):
    if not name.endswith(".weight"):
        _fail(path, f"tensor {name} is not one a llama model has")
    stem = name[:-len(".weight")]
    if stem in ("token_embd", "output_norm", "output"):
        return stem, None
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in wf.BLOCK_KINDS:
        block = int(parts[1])
        if block >= n_layers:
            _fail(path, f"tensor {name}: block {block} but llama.block_count is {n_layers}")
        return parts[2], block
    _fail(path, f"tensor {name} is not one a llama model has (BareFlow runs token_embd, output_norm, "
                "output and blk.N.{" + ",".join(wf.BLOCK_KINDS) + "})")


def target_type(kind: str, source: str, cols: int, mode: str) -> str:
    """The kernel type a tensor of GGUF type `source` becomes under WEIGHTS=mode."""
    if mode not in WEIGHTS_MODES:
        raise BareflowError(f"WEIGHTS={mode!r}: expected one of {', '.join(WEIGHTS_MODES)}")
    if kind in wf.NORM_KINDS:
        return "F32"
    if mode == "auto":
        if source in KERNEL_TYPES:
            return source
        return "Q8_0" if cols % 32 == 0 else "F32"
    want = mode.upper()
    if want in ("Q8_0", "Q4_0") and cols % 32:
        return "F32"        # rows that 32-weight blocks cannot tile stay float (the summary counts them)
    return want


def _encode(values, target: str):
    """float32 [rows, cols] -> the kernel type's bytes (numpy array)."""
    import gguf
    import numpy as np
    if target == "F32":
        return np.ascontiguousarray(values, dtype="<f4")
    if target == "F16":
        return np.ascontiguousarray(values, dtype="<f2")
    return gguf.quants.quantize(np.ascontiguousarray(values, dtype=np.float32),
                                gguf.GGMLQuantizationType[target])


def _tensor_values(t):
    import gguf
    import numpy as np
    return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)


def convert(model: GGUFModel, mode: str = "auto"):
    """The weights file's tensors: ([(kind, block, ggml_type, data)], summary line).

    data is each tensor's bytes in the kernel type (GGUF bytes as they are when the type is kept).
    """
    import numpy as np
    out, kept, changed = [], {}, {}
    for kind, block, rows, cols in wf.tensor_order(model.config):
        t = model.tensors[(kind, block)]
        src = t.tensor_type.name
        dst = target_type(kind, src, cols, mode)
        if src == dst:
            data = np.ascontiguousarray(t.data)
            kept[src] = kept.get(src, 0) + 1
        else:
            data = _encode(_tensor_values(t).reshape(rows, cols), dst)
            changed[(src, dst)] = changed.get((src, dst), 0) + 1
        out.append((kind, block, wf.TYPES[dst], data))
    return out, _summary(model.path, mode, kept, changed)


def _summary(path, mode, kept, changed):
    parts = [f"kept {', '.join(f'{n} x{c}' for n, c in sorted(kept.items()))}"] if kept else []
    if changed:
        parts.append("converted " + ", ".join(f"{s} x{c} -> {d}" for (s, d), c in sorted(changed.items())))
    return f"weights {os.path.basename(path)} (WEIGHTS={mode}): " + "; ".join(parts)


def llama2c_tensors(path, mode: str):
    """A llama2.c checkpoint as weights-file tensors under WEIGHTS=mode (f32 when mode is auto).

    Returns (WeightsConfig, [(kind, block, ggml_type, data)], summary line)."""
    from . import checkpoint as model_mod
    config, w = model_mod.read_checkpoint(path)
    cfg = wf.WeightsConfig(config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads,
                           config.vocab_size, config.seq_len, config.head_size, config.head_size, 10000.0,
                           1e-5, config.shared_classifier)
    source = {("token_embd", None): w.token_embedding_table, ("output_norm", None): w.rms_final_weight,
              ("output", None): w.wcls}
    per_block = {"attn_norm": w.rms_att_weight, "attn_q": w.wq, "attn_k": w.wk, "attn_v": w.wv,
                 "attn_output": w.wo, "ffn_norm": w.rms_ffn_weight, "ffn_gate": w.w1, "ffn_down": w.w2,
                 "ffn_up": w.w3}
    out, changed = [], {}
    for kind, block, rows, cols in wf.tensor_order(cfg):
        values = source[(kind, None)] if block is None else per_block[kind][block]
        dst = target_type(kind, "F32", cols, "f32" if mode == "auto" else mode)
        out.append((kind, block, wf.TYPES[dst], _encode(values.reshape(rows, cols), dst)))
        changed[("F32", dst)] = changed.get(("F32", dst), 0) + 1
    kept = {"F32": changed.pop(("F32", "F32"))} if ("F32", "F32") in changed else {}
    return cfg, out, _summary(path, mode, kept, changed)


def weights_file_size(cfg: wf.WeightsConfig, types: dict) -> int:
    """Size in bytes of the weights file for {(kind, block): ggml_type}."""
    return wf.layout(cfg, types)[1]


def planned_types(model: GGUFModel, mode: str) -> dict:
    """{(kind, block): ggml_type} convert() will produce (without converting anything)."""
    return {(k, b): wf.TYPES[target_type(k, model.tensors[(k, b)].tensor_type.name, c, mode)]
            for k, b, _, c in wf.tensor_order(model.config)}


def with_seq_len(cfg: wf.WeightsConfig, seq_len: int) -> wf.WeightsConfig:
    return replace(cfg, seq_len=seq_len)

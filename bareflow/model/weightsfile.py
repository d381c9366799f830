"""The BareFlow weights file (docs/weights-format.md): typed tensors the kernel reads in place.

A 64-byte header (magic "BFWT", version, CRC-32 of header and table, hyperparameters), a table of
32-byte tensor entries in a fixed order, then each tensor's bytes at a 64-byte aligned offset in
its GGUF block layout (ggml type codes: F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 8).  The kernel's reader
is src/runtime/weights.c; both sides check the same rules.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from bareflow.core.atomicfile import replace_atomically
from bareflow.errors import BareflowError

MAGIC = b"BFWT"
VERSION = 1
HEADER_BYTES = 64
ENTRY_BYTES = 32
ALIGN = 64
NO_BLOCK = 0xFFFFFFFF
FLAG_SHARED = 1

KINDS = ("token_embd", "output_norm", "output", "attn_norm", "attn_q", "attn_k", "attn_v",
         "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up")
BLOCK_KINDS = KINDS[3:]
NORM_KINDS = ("output_norm", "attn_norm", "ffn_norm")

# ggml_type codes (ggml.h) and (block size in weights, bytes per block) for the kernel's types.
TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34)}

_HEADER = struct.Struct("<4sIIII9i2f")
_ENTRY = struct.Struct("<IIIIIIQ")


@dataclass(frozen=True)
class WeightsConfig:
    """Hyperparameters the kernel runs with (struct bf_config plus the classifier flag)."""
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int            # most positions a run may use (the KV cache is sized from STEPS)
    head_dim: int
    rope_dim: int
    rope_theta: float
    rms_eps: float
    shared_classifier: bool

    @property
    def head_size(self) -> int:     # the name reference.Transformer (after llama2.c) reads
        return self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


def row_bytes(ggml_type: int, cols: int) -> int:
    """Bytes of one row of `cols` weights; raises BareflowError for a type the kernel lacks."""
    if ggml_type not in BLOCKS:
        raise BareflowError(f"ggml type {ggml_type} is not one the kernel runs ({', '.join(TYPES)})")
    per, size = BLOCKS[ggml_type]
    if cols % per:
        raise BareflowError(f"{cols} columns is not a multiple of {per} for {TYPE_NAMES[ggml_type]}")
    return cols // per * size


def tensor_order(cfg: WeightsConfig) -> list:
    """[(kind, block or None, rows, cols)] in file order."""
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    order = [("token_embd", None, cfg.vocab_size, cfg.dim), ("output_norm", None, 1, cfg.dim)]
    if not cfg.shared_classifier:
        order.append(("output", None, cfg.vocab_size, cfg.dim))
    shapes = {"attn_norm": (1, cfg.dim), "attn_q": (q_dim, cfg.dim), "attn_k": (kv_dim, cfg.dim),
              "attn_v": (kv_dim, cfg.dim), "attn_output": (cfg.dim, q_dim), "ffn_norm": (1, cfg.dim),
              "ffn_gate": (cfg.hidden_dim, cfg.dim), "ffn_down": (cfg.dim, cfg.hidden_dim),
              "ffn_up": (cfg.hidden_dim, cfg.dim)}
    for b in range(cfg.n_layers):
        order.extend((k, b, *shapes[k]) for k in BLOCK_KINDS)
    return order


def tensor_name(kind: str, block) -> str:
    """GGUF's name for a tensor (without .weight): token_embd, blk.3.attn_q, ..."""
    return kind if block is None else f"blk.{block}.{kind}"


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def layout(cfg: WeightsConfig, types: dict) -> tuple:
    """Offsets for `types` ({(kind, block): ggml_type}): ([(kind, block, type, rows, cols, offset,
    nbytes)], file size in bytes)."""
    order = tensor_order(cfg)
    off = HEADER_BYTES + ENTRY_BYTES * len(order)
    rows_out = []
    for kind, block, rows, cols in order:
        t = types[(kind, block)]
        off = _align(off)
        n = rows * row_bytes(t, cols)
        rows_out.append((kind, block, t, rows, cols, off, n))
        off += n
    return rows_out, off


def header_and_table(cfg: WeightsConfig, entries: list) -> bytes:
    """The header (with its CRC-32) and tensor table for `entries` from layout()."""
    table = b"".join(_ENTRY.pack(KINDS.index(k), NO_BLOCK if b is None else b, t, r, c, 0, off)
                     for k, b, t, r, c, off, _ in entries)
    head = _HEADER.pack(MAGIC, VERSION, 0, len(entries), FLAG_SHARED if cfg.shared_classifier else 0,
                        cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size,
                        cfg.seq_len, cfg.head_dim, cfg.rope_dim, cfg.rope_theta, cfg.rms_eps)
    crc = zlib.crc32(head[12:] + table) & 0xFFFFFFFF
    return head[:8] + struct.pack("<I", crc) + head[12:] + table


def write(path, cfg: WeightsConfig, tensors) -> int:
    """Write the weights file to `path` (via a temporary name: never left half-written).

    tensors: iterable of (kind, block, ggml_type, data) in tensor_order(cfg); data is a bytes-like
    object (a numpy array's raw bytes) of exactly rows * row_bytes(type, cols) bytes.  Returns the
    file size.  Raises BareflowError on a tensor out of order or of the wrong size.
    """
    tensors = list(tensors)
    types = {(k, b): t for k, b, t, _ in tensors}
    order = tensor_order(cfg)
    if [(k, b) for k, b, _, _ in tensors] != [(k, b) for k, b, _, _ in order]:
        raise BareflowError(f"weights file {path}: tensors are not in the documented order")
    entries, size = layout(cfg, types)
    with replace_atomically(path) as f:
        f.write(header_and_table(cfg, entries))
        for (kind, block, t, _, _, off, n), (_, _, _, data) in zip(entries, tensors):
            mv = memoryview(data).cast("B")
            if mv.nbytes != n:
                raise BareflowError(f"weights file {path}: tensor {tensor_name(kind, block)} has {mv.nbytes} "
                                    f"bytes, its shape and type {TYPE_NAMES[t]} need {n}")
            f.write(b"\0" * (off - f.tell()))
            f.write(mv)
    return size


def read(path):
    """Parse a weights file: (WeightsConfig, {(kind, block): (ggml_type, rows, cols, offset)}).
    For tests and tools; the kernel's own checks are in src/runtime/weights.c."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES or head[:4] != MAGIC:
            raise BareflowError(f"weights file {path}: no BFWT header")
        magic, version, crc, n, flags, *rest = _HEADER.unpack(head)
        table = f.read(ENTRY_BYTES * n)
    if zlib.crc32(head[12:] + table) & 0xFFFFFFFF != crc:
        raise BareflowError(f"weights file {path}: header checksum mismatch")
    cfg = WeightsConfig(*rest[:9], rest[9], rest[10], bool(flags & FLAG_SHARED))
    out = {}
    for i in range(n):
        k, b, t, r, c, _, off = _ENTRY.unpack_from(table, i * ENTRY_BYTES)
        out[(KINDS[k], None if b == NO_BLOCK else b)] = (t, r, c, off)
    return cfg, out

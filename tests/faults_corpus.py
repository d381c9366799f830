"""A corpus of valid and invalid files for every format the kernel reads (issue 8, kind 2).

`cases()` yields Case(format, name, files, valid_by_design) where `files` replaces entries of
test_runtime_hosted.base_files().  The agreement test runs the build's validator and the kernel
(bareflow-hosted) over each; the fuzzer seeds its corpus from the same files.  Everything is
generated from the synthetic model and the real modules at test time: nothing here is an image
or a model checked into the repository.
"""
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bareflow.modules import modformat
from bareflow.model.checkpoint import ModelConfig, checkpoint_size
from test_runtime_hosted import (LAYERS, config, module_files, policy_table, recrc_module, simple_policy,
                                 synthetic_model)


@dataclass
class Case:
    format: str
    name: str
    files: dict


def _tok_bytes(mtl, records):
    return struct.pack("<i", mtl) + b"".join(struct.pack("<fi", s, len(p)) + p for s, p in records)


def _synthetic_tokens():
    data = Path(synthetic_model()[1]).read_bytes()
    mtl, off, records = struct.unpack_from("<i", data)[0], 4, []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        records.append((score, data[off + 8:off + 8 + n]))
        off += 8 + n
    return mtl, records


def tokenizer_cases():
    mtl, recs = _synthetic_tokens()
    good = _tok_bytes(mtl, recs)
    dup = list(recs)
    dup[-1] = (dup[-1][0], dup[-2][1])                  # the example: two identical pieces
    empty = list(recs)
    empty[-1] = (empty[-1][0], b"")
    nul = list(recs)
    nul[-1] = (nul[-1][0], b"a\0b")
    nan = list(recs)
    nan[-1] = (float("nan"), nan[-1][1])
    long_piece = list(recs)
    long_piece[-1] = (0.0, b"x" * (mtl + 1))
    yield "valid", good
    yield "max-token-length-1024", _tok_bytes(1024, recs)
    yield "max-token-length-1025", _tok_bytes(1025, recs)
    yield "max-token-length-0", _tok_bytes(0, recs)
    yield "duplicate-piece", _tok_bytes(mtl, dup)
    yield "empty-piece", _tok_bytes(mtl, empty)
    yield "nul-in-piece", _tok_bytes(mtl, nul)
    yield "nan-score", _tok_bytes(mtl, nan)
    yield "piece-over-max", _tok_bytes(mtl, long_piece)
    yield "trailing-byte", good + b"\0"
    yield "truncated", good[:-1]
    yield "short-header", good[:3]


def _model_bytes(cfg, header=None):
    """A checkpoint of small deterministic weights for `cfg` (header values overridable)."""
    size = checkpoint_size(cfg)
    n = (size - 28) // 4
    weights = (np.sin(np.arange(n, dtype=np.float64)) * 0.05).astype("<f4").tobytes()
    vocab = cfg.vocab_size if cfg.shared_classifier else -cfg.vocab_size
    values = header or (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, vocab, cfg.seq_len)
    return struct.pack("<7i", *values) + weights


def model_cases():
    good = Path(synthetic_model()[0]).read_bytes()
    vocab = abs(struct.unpack_from("<i", good, 20)[0])
    small = dict(dim=8, hidden_dim=8, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=vocab, seq_len=64,
                 shared_classifier=True)
    yield "valid-synthetic", good
    yield "valid-small-shared", _model_bytes(ModelConfig(**small))
    yield "valid-small-separate", _model_bytes(ModelConfig(**{**small, "shared_classifier": False}))
    yield "seq-len-65536", _model_bytes(ModelConfig(**{**small, "seq_len": 65536}))
    yield "seq-len-65537", _model_bytes(ModelConfig(**{**small, "seq_len": 65537}))
    yield "n-layers-256", _model_bytes(ModelConfig(**{**small, "n_layers": 256}))
    yield "n-layers-257", _model_bytes(ModelConfig(**{**small, "n_layers": 257}))
    yield "hidden-65537", _model_bytes(ModelConfig(**{**small, "hidden_dim": 65537}))
    yield "odd-head", _model_bytes(ModelConfig(**{**small, "n_heads": 8}))
    yield "dim-not-divisible", _model_bytes(ModelConfig(**{**small, "n_heads": 3}))
    yield "kv-not-divisible", _model_bytes(ModelConfig(**{**small, "dim": 12, "n_heads": 2, "n_kv_heads": 3}))
    yield "zero-layers", struct.pack("<i", 8) + good[4:8] + struct.pack("<i", 0) + good[12:]
    yield "truncated", good[:-4]
    yield "extra-float", good + b"\0\0\0\0"
    yield "short-header", good[:27]


def config_cases():
    yield "valid", config()
    yield "valid-crlf", config().replace(b"\n", b"\r\n")
    yield "valid-defaults-only", b"# nothing set\n"
    yield "valid-empty-prompt", b"prompt =\nsteps = 8\n"
    yield "valid-seed-max", config(seed=2**64 - 1)
    yield "valid-plus-sign", config(temperature="+1")
    yield "valid-leading-dot", config(temperature=".5", topp="1.")
    yield "valid-exponent", config(temperature="2e-1", topp="9E-1")
    yield "valid-tiny-normal", config(temperature="2e-38")
    yield "zero-times-huge-exponent", config(temperature="0e999")
    yield "denormal-temperature", config(temperature="1e-38")
    yield "denormal-topp", config(topp="1e-40")
    yield "nan", config(temperature="nan")
    yield "exponent-too-long", config(temperature="1e1000")
    yield "nineteen-digits", config(temperature="0.000000000000000001")
    yield "lone-cr", config().replace(b"\n", b"\r", 1)
    yield "tab-in-prompt", b"prompt = a\tb\n"
    yield "non-ascii", "prompt = caf\u00e9\n".encode("latin-1")
    yield "nul-byte", b"steps = 8\0\n"
    yield "repeated-key", b"steps = 8\nsteps = 9\n"
    yield "unknown-key", b"stepz = 8\n"
    yield "no-equals", b"steps 8\n"
    yield "steps-zero", config(steps=0)
    yield "steps-over-seq-len", config(steps=257)
    yield "steps-negative", config(steps=-1)
    yield "seed-2-64", config(seed=2**64)
    yield "topp-zero", config(topp="0")
    yield "temperature-over-2", config(temperature="2.0000001")
    yield "prompt-1024", config(prompt="a" * 1024)
    yield "too-big", b"#" * 8193
    yield "valid-jit-timeout-limits", config() + b"jit_timeout_ms = 1\njit_heap_kib = 4194304\n"
    yield "valid-jit-timeout-max", config() + b"jit_timeout_ms = 3600000\n"
    yield "jit-timeout-zero", config() + b"jit_timeout_ms = 0\n"
    yield "jit-timeout-over-max", config() + b"jit_timeout_ms = 3600001\n"
    yield "jit-timeout-plus-sign", config() + b"jit_timeout_ms = +5\n"
    yield "jit-timeout-unit", config() + b"jit_timeout_ms = 5ms\n"


def policy_cases():
    yield "valid", policy_table(simple_policy())
    ladder = simple_policy()
    ladder[1] = ("rmsnorm", ["O0", "O1", "O2"], [10**9, 5], [0, 10**15], 1)
    yield "valid-limits", policy_table(ladder)
    over = simple_policy()
    over[1] = ("rmsnorm", ["O0", "O2"], [10**9 + 1], [], 0)
    yield "calls-over-limit", policy_table(over)
    cyc = simple_policy()
    cyc[1] = ("rmsnorm", ["O0", "O2"], [0], [10**15 + 1], 0)
    yield "cycles-over-limit", policy_table(cyc)
    yield "missing-layer", policy_table(simple_policy()[:-1])
    yield "unknown-layer", policy_table(simple_policy() + [("softmax", ["O0"], [], [], 0)])
    yield "duplicate-layer", policy_table(simple_policy() + [simple_policy()[0]])
    down = simple_policy()
    down[0] = ("embed", ["O2", "O1"], [3], [], 0)
    yield "ladder-descends", policy_table(down)
    notrig = simple_policy()
    notrig[0] = ("embed", ["O0", "O1"], [0], [0], 0)
    yield "no-trigger", policy_table(notrig)
    flags = simple_policy()
    flags[0] = ("embed", ["O0"], [], [], 4)
    yield "unknown-flag", policy_table(flags)
    good = policy_table(simple_policy())
    yield "bad-crc", good[:12] + bytes([good[12] ^ 1]) + good[13:]
    yield "truncated", good[:-1]
    upper = bytearray(good)
    upper[16:21] = b"EMBED"
    upper[12:16] = b"\0\0\0\0"
    upper[12:16] = struct.pack("<I", zlib.crc32(bytes(upper)))
    yield "upper-case-name", bytes(upper)


def _patched_module(data, offset, fmt, value):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, value)
    return recrc_module(bytes(data))


def module_cases():
    mods = module_files()
    with_reloc = next(n for n in sorted(mods) if len(modformat.parse(mods[n]).relocs) >= 2)
    data = mods[with_reloc]
    at = 64 + modformat.parse(data).file_image_size
    first = struct.unpack_from("<I", data, at)[0]
    yield with_reloc, "valid", data
    yield with_reloc, "reloc-inside-code", _patched_module(data, at, "<I", 8)
    yield with_reloc, "import-addend", _patched_module(data, at + 8, "<q", 8)
    yield with_reloc, "relocs-overlap", _patched_module(data, at + 16, "<I", first + 4)
    yield with_reloc, "relative-in-tail", _patched_module(data, at + 4, "<H", 1)
    yield with_reloc, "entry-not-first", _patched_module(data, 40, "<I", 16)
    yield with_reloc, "bad-crc", data[:100] + bytes([data[100] ^ 1]) + data[101:]
    yield with_reloc, "layer-upper-case", _patched_module(data, 8, "16s", with_reloc.split("/")[-1].split(".")[0]
                                                           .encode())
    yield with_reloc, "import-name-space", _patched_module(data, len(data) - 32 * len(modformat.parse(data).imports),
                                                           "4s", b"a b\0")
    yield with_reloc, "align-24", _patched_module(data, 36, "<I", 24)
    yield with_reloc, "truncated", data[:-1]


def cases():
    for name, data in tokenizer_cases():
        yield Case("tokenizer", name, {"/TOKENIZR.BIN": data})
    for name, data in model_cases():
        yield Case("model", name, {"/MODEL.BIN": data})
    for name, data in config_cases():
        yield Case("config", name, {"/BAREFLOW.CFG": data})
    for name, data in policy_cases():
        yield Case("policy", name, {"/POLICY.TBL": data})
    for path, name, data in module_cases():
        yield Case("module", name, {path: data})
    # The pair the model decides for the tokenizer: vocab_size 2 leaves no EOS id.
    two = [(0.0, b"<unk>"), (0.0, b" ")]
    small = ModelConfig(dim=8, hidden_dim=8, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=2, seq_len=64,
                        shared_classifier=True)
    yield Case("tokenizer", "vocab-2", {"/MODEL.BIN": _model_bytes(small), "/TOKENIZR.BIN": _tok_bytes(8, two)})

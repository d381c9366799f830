"""Checkpoint header validation, weight views and per-layer costs (bareflow/model.py)."""
import struct
from pathlib import Path

import numpy as np
import pytest

from bareflow.errors import BareflowError
from bareflow.model.checkpoint import (LAYER_NAMES, ModelConfig, checkpoint_size, layer_costs,
                                    read_checkpoint, read_config, tensor_shapes)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
SMALL = (8, 12, 2, 4, 2, 10, 6)


def small_size(header):
    dim, hidden, layers, heads, kv_heads, vocab, seq = header
    cfg = ModelConfig(dim, hidden, layers, heads, kv_heads, abs(vocab), seq, vocab > 0)
    return checkpoint_size(cfg)


def write_ckpt(path, header, n_floats=None, values=None):
    """Header plus float32 payload; the payload defaults to the exact size the header implies."""
    if values is None:
        if n_floats is None:
            n_floats = (small_size(header) - 28) // 4
        values = np.arange(n_floats, dtype="<f4")
    path.write_bytes(struct.pack("<7i", *header) + np.asarray(values, "<f4").tobytes())
    return path


def test_shared_and_separate_sizes_are_exact(tmp_path):
    dim, hidden, L, heads, kvh, vocab, seq = SMALL
    kv = dim * kvh // heads
    hs = dim // heads
    body = (vocab * dim + L * dim + L * dim * dim + 2 * L * kv * dim + L * dim * dim + L * dim
            + 3 * L * hidden * dim + dim + 2 * seq * hs // 2)
    assert small_size(SMALL) == 28 + 4 * body
    separate = SMALL[:5] + (-vocab,) + SMALL[6:]
    assert small_size(separate) == 28 + 4 * (body + vocab * dim)
    cfg = read_config(write_ckpt(tmp_path / "sep.bin", separate))
    assert (cfg.vocab_size, cfg.shared_classifier, cfg.head_size, cfg.kv_dim) == (10, False, 2, 4)
    assert cfg.header_values() == separate


def test_weight_views_follow_llama2c_order(tmp_path):
    separate = SMALL[:5] + (-SMALL[5],) + SMALL[6:]
    cfg, w = read_checkpoint(write_ckpt(tmp_path / "m.bin", separate))
    offset = 0
    for name, shape in tensor_shapes(cfg):
        t = getattr(w, name)
        assert t.shape == shape and t.dtype == np.float32
        assert t.reshape(-1)[0] == offset, name  # the payload is 0, 1, 2, ... in file order
        offset += t.size
    assert offset == (small_size(separate) - 28) // 4
    assert w.wcls is not w.token_embedding_table
    assert not w.wq.flags.writeable


def test_shared_classifier_is_the_embedding(tmp_path):
    cfg, w = read_checkpoint(write_ckpt(tmp_path / "m.bin", SMALL))
    assert cfg.shared_classifier and w.wcls is w.token_embedding_table


FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]
# a negative vocab_size is legal (separate classifier); |vocab_size| < 2 is not (BOS is id 1)
NON_POSITIVE = [(i, f, v) for i, f in enumerate(FIELDS) for v in (0, -1)]


@pytest.mark.parametrize("index,field,value", NON_POSITIVE)
def test_non_positive_field_is_named(tmp_path, index, field, value):
    header = list(SMALL)
    header[index] = value
    path = write_ckpt(tmp_path / "bad.bin", header, n_floats=100)
    with pytest.raises(BareflowError, match=rf"bad\.bin: header says {field}={value}"):
        read_config(path)


@pytest.mark.parametrize("header,message", [
    ((9, 12, 2, 4, 2, 10, 6), r"dim=9, n_heads=4; dim must be a multiple of n_heads"),
    ((8, 12, 2, 4, 3, 10, 6), r"n_heads=4, n_kv_heads=3; n_heads must be a multiple"),
    ((12, 12, 2, 4, 2, 10, 6), r"head_size=3 is odd"),
    ((16386, 12, 2, 2, 1, 10, 6), r"dim=16386; the maximum is 16384"),
    ((8, 12, 257, 4, 2, 10, 6), r"n_layers=257; the maximum is 256"),
    ((8, 12, 2, 4, 2, 10, 65537), r"seq_len=65537; the maximum is 65536"),
    ((8, 12, 2, 4, 2, -(1 << 20) - 1, 6), r"vocab_size=-1048577; the maximum is 1048576"),
    ((8, 12, 2, 4, 2, 1, 6), r"vocab_size=1; it must be at least 2 in size, since BOS is token id 1"),
])
def test_inconsistent_header_is_named(tmp_path, header, message):
    path = write_ckpt(tmp_path / "bad.bin", header, n_floats=100)
    with pytest.raises(BareflowError, match=r"checkpoint .*bad\.bin: .*" + message):
        read_config(path)


@pytest.mark.parametrize("delta", [-4, -1, 1, 4])
def test_wrong_size_reports_expected_and_actual(tmp_path, delta):
    expected = small_size(SMALL)
    path = tmp_path / "m.bin"
    path.write_bytes(struct.pack("<7i", *SMALL) + bytes(expected - 28 + delta))
    with pytest.raises(BareflowError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and "vocab_size=10" in msg and "shared classifier" in msg
    assert f"expected {expected} bytes, file has {expected + delta}" in msg


def test_classifier_sign_changes_expected_size(tmp_path):
    # A file sized for a shared classifier but whose header claims a separate one.
    path = tmp_path / "m.bin"
    path.write_bytes(struct.pack("<7i", *SMALL[:5], -SMALL[5], SMALL[6])
                     + bytes(small_size(SMALL) - 28))
    with pytest.raises(BareflowError, match=r"vocab_size=-10.*separate classifier.*expected "
                                            rf"{small_size(SMALL) + 4 * 10 * 8} bytes"):
        read_config(path)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(BareflowError, match=r"checkpoint .*nope\.bin: file does not exist"):
        read_config(tmp_path / "nope.bin")
    with pytest.raises(BareflowError, match=r"not a regular file"):
        read_config(tmp_path)
    short = tmp_path / "short.bin"
    short.write_bytes(struct.pack("<7i", *SMALL)[:27])
    with pytest.raises(BareflowError, match=r"short\.bin: file has 27 bytes, smaller than the "
                                            r"28-byte header"):
        read_checkpoint(short)
    header_only = tmp_path / "header.bin"
    header_only.write_bytes(struct.pack("<7i", *SMALL))
    with pytest.raises(BareflowError, match=r"file has 28$"):
        read_checkpoint(header_only)


def test_layer_costs_cover_every_layer_with_brief_call_counts(tmp_path):
    cfg = read_config(write_ckpt(tmp_path / "m.bin", SMALL))
    costs = layer_costs(cfg)
    assert tuple(costs) == LAYER_NAMES
    L, d, h, v, kv = cfg.n_layers, cfg.dim, cfg.hidden_dim, cfg.vocab_size, cfg.kv_dim
    assert {n: c[2] for n, c in costs.items()} == {
        "embed": 1, "rmsnorm": 2 * L + 1, "qkv": L, "rope": L, "attn": L, "attnout": L,
        "ffn": L, "classify": 1, "sampler": 1}
    assert costs["qkv"][:2] == (2 * d * (d + 2 * kv), 4 * d * (d + 2 * kv))
    assert costs["classify"][:2] == (2 * d * v, 4 * d * v)
    assert costs["ffn"][1] == 12 * d * h
    for name, (flops, nbytes, calls) in costs.items():
        assert all(isinstance(x, int) and x >= 0 for x in (flops, nbytes, calls)), name
    # attention work grows with the context it attends over; nothing else does
    longer = layer_costs(cfg, context=cfg.seq_len)
    assert longer["attn"][0] > layer_costs(cfg, context=1)["attn"][0]
    assert {k: c for k, c in longer.items() if k != "attn"} == \
           {k: c for k, c in costs.items() if k != "attn"}
    with pytest.raises(BareflowError, match="context=0"):
        layer_costs(cfg, context=0)


def test_stories260k_header():
    path = DATA / "stories260K.bin"
    if not path.exists():
        pytest.skip(f"{path} not present (the shared data directory is missing)")
    cfg, w = read_checkpoint(path)
    assert cfg == ModelConfig(64, 172, 5, 8, 4, 512, 512, True)
    assert path.stat().st_size == checkpoint_size(cfg) == 1056540
    # a trained model's norms are far from zero and its embeddings are finite
    assert np.isfinite(w.token_embedding_table).all() and np.abs(w.rms_final_weight).min() > 0

"""GGUF models: build-time validation, conversion to the weights file, and generation with
typed weights compared with the numpy reference.

Small llama GGUFs are written at test time with gguf.GGUFWriter (bareflow/model/gguf_writer.py),
one per weight type; the hosted runtime runs each converted weights file from a FAT16 image and
must produce the numpy reference's greedy tokens (reference on the weights dequantised by the
gguf package, float activations).
"""
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bareflow.model import gguf_model, gguf_reference, synthetic, weights_build
from bareflow.model import weightsfile as wf
from bareflow.errors import BareflowError
from bareflow.model.gguf_writer import LlamaShape, write_llama_gguf
from bareflow.model.reference import Transformer, generate

import test_runtime_hosted as rt

VOCAB = 497                                 # the synthetic llama2.c tokenizer drives the prompts
SHAPE = dict(dim=64, hidden_dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=VOCAB)


def gguf_file(tmp_path, name="m.gguf", types=None, **kw):
    shape = LlamaShape(**{**SHAPE, **{k: v for k, v in kw.items() if k in LlamaShape.__dataclass_fields__}})
    extra = {k: v for k, v in kw.items() if k not in LlamaShape.__dataclass_fields__}
    return write_llama_gguf(tmp_path / name, shape, types=types, **extra)


def expect_error(path, fragment, cap=None):
    with pytest.raises(BareflowError) as exc:
        gguf_model.read_gguf(path, cap)
    msg = str(exc.value)
    assert str(path) in msg and fragment in msg, msg
    return msg


# ---------------------------------------------------------------- build-time validation

def test_reads_every_hyperparameter(tmp_path):
    p = gguf_file(tmp_path, rope_theta=50000.0, rms_eps=1e-6, tied=True, context_length=300)
    m = gguf_model.read_gguf(p, 100)
    c = m.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size) == (64, 128, 2, 4, 2, VOCAB)
    assert (c.head_dim, c.rope_dim, c.rope_theta, c.shared_classifier) == (16, 16, 50000.0, True)
    assert abs(c.rms_eps - 1e-6) < 1e-12
    assert m.context_length == 300 and c.seq_len == 100          # SEQ_LEN caps the context


def test_refuses_other_architecture(tmp_path):
    expect_error(gguf_file(tmp_path, arch="gpt2"), "general.architecture = 'gpt2'")


@pytest.mark.parametrize("key", ["llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                                 "llama.attention.head_count", "llama.attention.head_count_kv",
                                 "llama.attention.layer_norm_rms_epsilon", "llama.context_length"])
def test_refuses_missing_key(tmp_path, key):
    expect_error(gguf_file(tmp_path, skip=(key,)), f"metadata key {key} is missing")


def test_refuses_missing_tensor(tmp_path):
    expect_error(gguf_file(tmp_path, skip=("blk.1.ffn_up.weight",)), "tensor blk.1.ffn_up.weight is missing")


def test_refuses_shape_disagreeing_with_metadata(tmp_path):
    import gguf
    # feed_forward_length says 96 while the tensors are 128 wide
    shape = LlamaShape(**SHAPE, extra_kv={"llama.feed_forward_length": (96, gguf.GGUFValueType.UINT32)})
    p = write_llama_gguf(tmp_path / "s.gguf", shape, skip=("llama.feed_forward_length",))
    expect_error(p, "tensor blk.0.ffn_gate.weight has shape [64, 128] (ggml order), the metadata implies [64, 96]")


def test_refuses_truncated_file(tmp_path):
    p = gguf_file(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[:-4096])
    expect_error(p, "truncated")


@pytest.mark.parametrize("version", [1, 2])
def test_refuses_old_gguf_versions(tmp_path, version):
    p = gguf_file(tmp_path)
    data = bytearray(p.read_bytes())
    data[4:8] = struct.pack("<I", version)
    p.write_bytes(bytes(data))
    expect_error(p, f"GGUF version {version}; only version 3")


def test_scons_refuses_bad_gguf_before_writing(tmp_path):
    from buildutil import scons
    p = gguf_file(tmp_path, skip=("llama.attention.head_count",))
    _, tok = rt.synthetic_model()
    out = tmp_path / "build"
    proc = scons(out, "image", f"MODEL={p}", f"TOKENIZER={tok}", check=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert f"GGUF {p}: metadata key llama.attention.head_count is missing" in proc.stdout
    assert not (out / "model").exists() and not (out / "bareflow.img").exists()


def test_a_noop_rebuild_does_not_rewrite_the_weights_file(tmp_path):
    from buildutil import scons
    p = gguf_file(tmp_path, types={k: "Q8_0" for k in wf.BLOCK_KINDS})
    _, tok = rt.synthetic_model()
    out = tmp_path / "build"
    first = scons(out, "image", f"MODEL={p}", f"TOKENIZER={tok}", "STEPS=8").stdout
    assert "  WEIGHTS " in first, first[-2000:]
    again = scons(out, "image", f"MODEL={p}", f"TOKENIZER={tok}", "STEPS=8").stdout
    assert "  WEIGHTS " not in again and "is up to date" in again, again[-2000:]
    other = scons(out, "image", f"MODEL={p}", f"TOKENIZER={tok}", "STEPS=9").stdout
    assert "  WEIGHTS " not in other, other[-2000:]            # STEPS does not touch the weights


def test_refuses_model_over_kernel_memory(tmp_path):
    p = gguf_file(tmp_path, context_length=1 << 20, n_layers=6)     # KV cache of 1M positions: 1.5 GiB
    with pytest.raises(BareflowError, match=r"bytes of kernel memory .* set SEQ_LEN lower"):
        weights_build.plan(str(p), "", "")
    weights_build.plan(str(p), "", "64")            # capped, it fits


def test_weights_mode_checked(tmp_path):
    with pytest.raises(BareflowError, match="WEIGHTS='q5_0'"):
        weights_build.plan(str(gguf_file(tmp_path)), "q5_0", "")


# ---------------------------------------------------------------- conversion

def convert(gguf_path, out, mode="auto", seq=""):
    plan = weights_build.plan(str(gguf_path), mode, seq)
    line = weights_build.write(plan, out)
    assert os.path.getsize(out) == plan.size
    return plan, line


def test_native_types_are_copied_block_for_block(tmp_path):
    p = gguf_file(tmp_path, types={k: "Q4_1" for k in wf.BLOCK_KINDS} | {"token_embd": "Q8_0", "output": "Q4_0"})
    plan, line = convert(p, tmp_path / "w.bin")
    assert "kept" in line and "converted" not in line and "Q4_1 x14" in line
    cfg, table = wf.read(tmp_path / "w.bin")
    data = (tmp_path / "w.bin").read_bytes()
    m = gguf_model.read_gguf(p)
    for (kind, block), (t, rows, cols, off) in table.items():
        src = m.tensors[(kind, block)]
        assert t == wf.TYPES[src.tensor_type.name]
        assert data[off:off + src.n_bytes] == bytes(np.ascontiguousarray(src.data).tobytes()), (kind, block)
        assert off % wf.ALIGN == 0


def test_kquants_and_bf16_converted_to_q8_0(tmp_path):
    p = write_llama_gguf(tmp_path / "k.gguf", LlamaShape(**{**SHAPE, "dim": 256, "hidden_dim": 256, "n_heads": 4}),
                         types={"attn_q": "Q6_K", "ffn_up": "Q4_K", "attn_v": "BF16"})
    plan, line = convert(p, tmp_path / "w.bin")
    assert "converted BF16 x2 -> Q8_0, Q4_K x2 -> Q8_0, Q6_K x2 -> Q8_0" in line, line
    cfg, table = wf.read(tmp_path / "w.bin")
    assert table[("attn_q", 0)][0] == wf.TYPES["Q8_0"]
    # the Q8_0 blocks encode the K-quant's values to Q8_0 accuracy
    ref_cfg, w = gguf_reference.load(p)
    m = gguf_model.read_gguf(p)
    src = gguf_reference._values(m.tensors[("attn_q", 0)].data, 14, 256, 256)
    assert np.allclose(w.wq[0], src, atol=np.abs(src).max() / 100)


@pytest.mark.parametrize("mode,want", [("f32", "F32"), ("f16", "F16"), ("q8_0", "Q8_0"), ("q4_0", "Q4_0")])
def test_weights_mode_requantises_every_matrix(tmp_path, mode, want):
    p = gguf_file(tmp_path, types={"attn_q": "Q4_1"})
    plan, line = convert(p, tmp_path / "w.bin", mode)
    cfg, table = wf.read(tmp_path / "w.bin")
    for (kind, _), (t, *_rest) in table.items():
        assert t == (0 if kind in wf.NORM_KINDS else wf.TYPES[want]), kind
    assert f"WEIGHTS={mode}" in line


def test_policy_cost_model_counts_quantised_weight_bytes(tmp_path):
    """The policy sees the bytes the weights file streams: Q4_1 blocks (20 bytes per 32 weights)
    in qkv/ffn, Q8_0 (34 per 32) in the tied classifier, float32 where nothing says otherwise."""
    from bareflow.model import checkpoint
    p = gguf_file(tmp_path, types={k: "Q4_1" for k in wf.BLOCK_KINDS if k not in wf.NORM_KINDS}
                  | {"token_embd": "Q8_0"}, tied=True)
    plan = weights_build.plan(str(p), "auto", "")
    per = weights_build.weight_bytes_per_value(plan)
    assert per["qkv"] == per["ffn"] == per["attnout"] == 20 / 32 and per["classify"] == 34 / 32
    cfg = weights_build.model_config(plan.config)
    f32, quant = checkpoint.layer_costs(cfg, 8), checkpoint.layer_costs(cfg, 8, per)
    d, h = SHAPE["dim"], SHAPE["hidden_dim"]
    assert f32["ffn"][1] == 4 * 3 * d * h and quant["ffn"][1] == 3 * d * h * 20 // 32
    assert quant["classify"][1] == d * VOCAB * 34 // 32
    assert quant["attn"] == f32["attn"] and quant["rmsnorm"] == f32["rmsnorm"]     # float32 operands
    assert quant["ffn"][0] == f32["ffn"][0]                                       # the arithmetic is the same


def test_llama2c_checkpoint_requantised(tmp_path):
    m, t = rt.synthetic_model()
    plan, line = convert(m, tmp_path / "w.bin", "q8_0")
    assert plan.kind == "llama2.c" and "F32 x" in line and "-> Q8_0" in line
    cfg, table = wf.read(tmp_path / "w.bin")
    assert table[("attn_q", 0)][0] == wf.TYPES["Q8_0"] and not cfg.shared_classifier


# ---------------------------------------------------------------- running typed weights

def hosted_tokens(tmp_path, weights_file, steps=24, temperature="0"):
    _, tok = rt.synthetic_model()
    files = rt.base_files(cfg=rt.config(steps=steps, temperature=temperature, seed=7), model=(weights_file, tok))
    run = rt.run_files(tmp_path, files)
    assert run.code == 0, run.out[-2000:]
    return run.result


def reference_tokens(model, steps=24, temperature=0.0):
    _, tok = rt.synthetic_model()
    return generate(model, tok, "Once upon a time", steps, temperature=temperature, seed=7)


CASES = {
    "F32": ({}, "auto"),
    "F16": ({k: "F16" for k in wf.KINDS}, "auto"),
    "Q8_0": ({k: "Q8_0" for k in wf.KINDS}, "auto"),
    "Q4_0": ({k: "Q4_0" for k in wf.KINDS}, "auto"),
    "Q4_1": ({k: "Q4_1" for k in wf.KINDS}, "auto"),
    "mixed": ({"token_embd": "Q8_0", "attn_q": "Q4_1", "attn_k": "Q4_0", "attn_v": "F16", "ffn_down": "Q8_0"},
              "auto"),
    "requant-q4_0": ({"attn_q": "Q4_1"}, "q4_0"),
}


@rt.needs_mtools
@pytest.mark.parametrize("case", list(CASES))
def test_hosted_matches_reference(tmp_path, case):
    types, mode = CASES[case]
    p = gguf_file(tmp_path, types=types, seed=len(case), tied=case == "mixed")
    convert(p, tmp_path / "w.bin", mode, "64")
    for temperature in (0.0, 1.0):      # greedy, and sampled (varied output from random weights)
        model = Transformer(gguf_reference.load(p, mode, 24))
        got = hosted_tokens(tmp_path, tmp_path / "w.bin", temperature=f"{temperature:g}")
        ref = reference_tokens(model, temperature=temperature)
        assert got["prompt_tokens"] == ref["prompt_tokens"]
        assert got["tokens"] == ref["tokens"], (case, temperature, min(ref["logits_margins"]))
    if case != "mixed":     # (tied random embeddings make each token predict itself: no variety there)
        assert len(set(got["tokens"])) > 3


# ---------------------------------------------------------------- a corrupt weights file on the image

def _table_patch(data, index, field_offset, value, fmt="<I", recrc=True):
    data = bytearray(data)
    at = wf.HEADER_BYTES + index * wf.ENTRY_BYTES + field_offset
    data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    if recrc:
        n = struct.unpack_from("<I", data, 12)[0]
        end = wf.HEADER_BYTES + n * wf.ENTRY_BYTES
        data[8:12] = struct.pack("<I", zlib.crc32(bytes(data[12:end])))
    return bytes(data)


@pytest.fixture(scope="module")
def q8_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("q8")
    p = gguf_file(d, types={k: "Q8_0" for k in wf.KINDS})
    convert(p, d / "w.bin", "auto", "64")
    return (d / "w.bin").read_bytes()


CORRUPTIONS = {
    "header byte": (lambda d: d[:24] + bytes([d[24] ^ 1]) + d[25:], "header checksum"),
    "table byte": (lambda d: d[:100] + bytes([d[100] ^ 0x40]) + d[101:], "header checksum"),
    "type": (lambda d: _table_patch(d, 3, 8, 14), "tensor blk.0.attn_norm has ggml type 14"),
    "matrix type": (lambda d: _table_patch(d, 4, 8, 12), "tensor blk.0.attn_q has ggml type 12"),
    "shape": (lambda d: _table_patch(d, 5, 12, 31), "tensor blk.0.attn_k is [31, 64]"),
    "alignment": (lambda d: _table_patch(d, 6, 24, struct.unpack_from("<Q", d, 64 + 6 * 32 + 24)[0] + 4, "<Q"),
                  "tensor blk.0.attn_v offset"),
    "overlap": (lambda d: _table_patch(d, 7, 24, struct.unpack_from("<Q", d, 64 + 6 * 32 + 24)[0], "<Q"),
                "tensor blk.0.attn_output offset"),
    "order": (lambda d: _table_patch(d, 0, 0, 1), "tensor table entry 0 is kind 1"),
    "truncated": (lambda d: d[:-100], "tensor blk.1.ffn_up (8704 bytes at"),
    "version": (lambda d: d[:4] + struct.pack("<I", 7) + d[8:], "header version 7"),
}


@rt.needs_mtools
@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_corrupt_weights_file_is_a_named_panic(tmp_path, q8_weights, what):
    change, fragment = CORRUPTIONS[what]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(change(q8_weights))
    _, tok = rt.synthetic_model()
    run = rt.expect_panic(tmp_path, rt.base_files(cfg=rt.config(steps=8), model=(bad, tok)), fragment)
    assert "weights /MODEL.BIN" in run.panic


def test_the_shared_reader_parses_like_gguf_and_keeps_tensors_mapped(tmp_path):
    # bareflow reads GGUF metadata over a plain ndarray view of the mapping (much faster for
    # big vocabularies); every field and tensor must come out as gguf.GGUFReader gives them.
    import gguf
    import numpy as np
    from bareflow.model.tokenizer_v2 import gguf_reader
    path = gguf_file(tmp_path, types={"attn_q": "Q8_0"})
    ours, stock = gguf_reader(path), gguf.GGUFReader(path)
    assert isinstance(ours, gguf.GGUFReader) and type(ours.data) is np.ndarray
    assert list(ours.fields) == list(stock.fields)
    for key, field in stock.fields.items():
        a, b = ours.fields[key].contents(), field.contents()
        assert (a == b) if not isinstance(b, np.ndarray) else np.array_equal(a, b), key
    assert [(t.name, t.tensor_type, t.data_offset) for t in ours.tensors] == \
        [(t.name, t.tensor_type, t.data_offset) for t in stock.tensors]
    assert all(np.array_equal(a.data, b.data) and not a.data.flags.owndata
               for a, b in zip(ours.tensors, stock.tensors))

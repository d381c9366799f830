"""The synthetic model: byte-identical, TinyLlama-shaped, and robust greedy decisions that
still depend on every layer."""
import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bareflow.model import reference

from bareflow.model import synthetic
from bareflow.model.checkpoint import Weights, checkpoint_size, read_checkpoint
from bareflow.model.reference import Transformer, generate
from bareflow.model.tokenizer import read_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PROMPT, STEPS = "Once upon a time", 32
# Float32 summation-order noise on these logits is ~1e-6 of the largest logit; a greedy step
# whose top-2 gap is 5e-2 of it cannot flip in the kernel.  The construction reaches ~0.15.
MIN_RELATIVE_MARGIN = 5e-2


@pytest.fixture(scope="module")
def synth():
    return synthetic.build()


def run(s, weights=None, ablate=(), prompt=PROMPT, steps=STEPS, **kw):
    model = Transformer((s.config, weights or s.weights()))
    model.ablate = set(ablate)
    return generate(model, s.tokenizer, prompt, steps, **kw)


def test_cli_output_is_byte_identical_and_readable(tmp_path):
    digests = []
    for run_dir in ("a", "b"):
        m, t = tmp_path / run_dir / "synthetic.bin", tmp_path / run_dir / "synthetic_tok.bin"
        subprocess.run([sys.executable, "tools/gen_synthetic_model.py", "--out-model", str(m),
                        "--out-tokenizer", str(t)], cwd=ROOT, check=True, capture_output=True)
        digests.append((hashlib.sha256(m.read_bytes()).hexdigest(),
                        hashlib.sha256(t.read_bytes()).hexdigest()))
    assert digests[0] == digests[1]
    cfg, w = read_checkpoint(m)
    tok = read_tokenizer(t, cfg.vocab_size)
    header = struct.unpack("<7i", m.read_bytes()[:28])
    # TinyLlama's architecture scaled down: GQA (2 kv heads for 8), separate classifier
    assert header == (64, 176, 4, 8, 2, -tok.vocab_size, 256)
    assert 300 <= tok.vocab_size <= 512
    assert m.stat().st_size == checkpoint_size(cfg) and not cfg.shared_classifier
    assert not np.array_equal(w.wcls, w.token_embedding_table)
    # the file's greedy run equals the in-memory one
    assert generate(m, t, PROMPT, STEPS) == run(synthetic.build())


def test_build_is_deterministic_and_seed_dependent(synth):
    again = synthetic.build()
    assert again.checkpoint_bytes() == synth.checkpoint_bytes()
    assert again.tokenizer.to_bytes() == synth.tokenizer.to_bytes()
    other = synthetic.build(seed=synthetic.SEED + 1)
    assert other.checkpoint_bytes() != synth.checkpoint_bytes()


def test_tokenizer_layout_and_merges(synth):
    tok = synth.tokenizer
    assert tok.pieces[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert all(tok.pieces[3 + b] == b"<0x%02X>" % b for b in range(256))
    ids = tok.encode(PROMPT)
    assert [tok.pieces[i] for i in ids] == [b"<s>", b" Once", b" upon", b" a", b" time"]
    # every story word is one merged piece; unknown words fall back to pieces and bytes
    for word in synthetic.STORY + synthetic.EXTRA_WORDS:
        if word.startswith(" "):  # the dummy prefix supplies the space
            assert tok.encode(word[1:], bos=False) == [tok.lookup(word.encode())], word
    ids = tok.encode("Hello \u00e9")
    assert tok.decode_all(ids[0], ids[1:]) == "Hello \u00e9".encode()
    assert 0xC3 + 3 in ids


def test_greedy_text_is_the_story(synth):
    r = run(synth)
    assert r["prompt_tokens"] == synth.tokenizer.encode(PROMPT)
    n_prompt = len(synthetic.STORY[:4])
    expected = synthetic.STORY[n_prompt:n_prompt + STEPS - n_prompt]
    assert r["text"] == "".join(expected)
    assert len(r["tokens"]) == STEPS - n_prompt


def test_greedy_margins_are_far_above_float32_noise(synth):
    r = run(synth)
    assert len(r["relative_margins"]) == len(r["tokens"])
    assert min(r["relative_margins"]) > MIN_RELATIVE_MARGIN, r["relative_margins"]


def test_small_weight_perturbations_do_not_change_tokens(synth):
    # 1e-4 relative noise on every weight is ~1000x float32 rounding: still the same tokens.
    base = run(synth)
    gen = np.random.Generator(np.random.PCG64(1))
    noisy = {k: (v * (1 + 1e-4 * gen.standard_normal(v.shape))).astype(np.float32)
             for k, v in synth.tensors.items()}
    assert run(synth, Weights(**noisy))["tokens"] == base["tokens"]


@pytest.mark.parametrize("layer", ["attn", "ffn", "rope"])
def test_every_block_layer_decides_tokens(synth, layer):
    # A kernel layer that computed nothing (or the wrong thing) must show in the tokens.
    assert run(synth, ablate=[layer])["tokens"] != run(synth)["tokens"]


def test_wrong_rope_pairing_is_caught(synth, monkeypatch):
    # A plausible kernel bug: rotating (i, i + head_size/2) (GPT-NeoX style) instead of the
    # adjacent pairs (2i, 2i+1) llama2.c uses.
    base = run(synth)

    def neox_rope(vec, pos, head_size, freqs):
        v = vec.reshape(-1, head_size).copy()
        half = head_size // 2
        ang = np.float32(pos) * freqs
        c, s = np.cos(ang), np.sin(ang)
        a, b = v[:, :half].copy(), v[:, half:].copy()
        v[:, :half], v[:, half:] = a * c - b * s, a * s + b * c
        return v.reshape(vec.shape).astype(np.float32)

    monkeypatch.setattr(reference, "rope", neox_rope)
    assert run(synth)["tokens"] != base["tokens"]


def test_wrong_kv_head_mapping_is_caught(synth):
    # Another plausible bug: query head h reading kv head h % n_kv_heads instead of
    # h / (n_heads / n_kv_heads).  Emulated on the correct code path by moving each query head
    # (its wq rows and wo columns) to a slot whose correct kv head is the one the bug picks.
    c = synth.config
    hs, kv = c.head_size, c.n_kv_heads
    wrong_group = [h % kv for h in range(c.n_heads)]
    group = c.n_heads // kv
    order = sorted(range(c.n_heads), key=lambda h: (wrong_group[h], h))
    assert [wrong_group[h] for h in order] == [j // group for j in range(c.n_heads)]
    rows = np.concatenate([np.arange(h * hs, (h + 1) * hs) for h in order])
    wq = synth.tensors["wq"][:, rows, :]
    wo = synth.tensors["wo"][:, :, rows]
    bad = Weights(**{**synth.tensors, "wq": np.ascontiguousarray(wq),
                     "wo": np.ascontiguousarray(wo)})
    assert run(synth, bad)["tokens"] != run(synth)["tokens"]


def test_generation_is_fast(synth):
    import time
    t0 = time.perf_counter()
    run(synth)
    assert time.perf_counter() - t0 < 1.0


def test_cli_seed_option(tmp_path):
    out = subprocess.run([sys.executable, "tools/gen_synthetic_model.py", "--out-model",
                          str(tmp_path / "m.bin"), "--out-tokenizer", str(tmp_path / "t.bin"),
                          "--seed", "0x1234"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    assert "vocab_size=" in out
    assert (tmp_path / "m.bin").read_bytes() == synthetic.build(0x1234).checkpoint_bytes()

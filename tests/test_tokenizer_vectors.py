"""The kernel's tokenizer against llama.cpp's own test vectors, through the hosted build.

llama.cpp ships vocabulary-only GGUFs with input texts (.inp, separated by `__ggml_vocab_test__`
lines) and the ids its tokenizer produces (.out, one line per text; tokenized without BOS and
without parsing special tokens).  tools/setup.sh caches them from the llama-cpp-python 0.3.36
sdist.  The build converts each GGUF to TOKENIZR.BIN (bareflow.model.tokenizer_v2), the real
runtime tokenizes every text in `bareflow-hosted IMAGE --tokenize`, and every id must match.
The pure-Python reference tokenizer is checked against the same vectors.
"""
import functools
import os
import struct
from pathlib import Path

import pytest

from bareflow.model import tokenizer_v2 as tv2

from test_runtime_hosted import hosted_program, make_image, needs_mtools

import subprocess

import fetch_models  # tools/

MODELS = fetch_models.llama_cpp_dir() / "models"
SEP = "\n__ggml_vocab_test__\n"
# Every vocabulary whose tokenizer and pre-tokenizer the kernel implements.
REQUIRED = ["llama-spm", "gpt-2"]
MORE = ["starcoder", "phi-3"]
# Opt-in (BAREFLOW_SLOW_TESTS=1): reading these GGUFs takes ~15-55 s each (refact shares
# starcoder's split; llama-bpe is llama 3's split with 280k merges).
SLOW = ["refact", "llama-bpe"]


def vocab_path(name):
    path = MODELS / f"ggml-vocab-{name}.gguf"
    if not (path.exists() and Path(f"{path}.inp").exists() and Path(f"{path}.out").exists()):
        pytest.skip(f"{path}(.inp/.out) absent: run tools/setup.sh online to cache llama.cpp's vocabularies")
    return path


def cases(path):
    texts = Path(f"{path}.inp").read_bytes().decode("utf-8").split(SEP)
    if texts[-1].endswith(SEP.rstrip("\n")):
        texts[-1] = texts[-1][:-len(SEP.rstrip("\n"))]
    expected = [[int(x) for x in line.split()] for line in Path(f"{path}.out").read_text().split("\n")]
    assert len(expected) >= len(texts) > 40
    return texts, expected[:len(texts)]


@functools.lru_cache(maxsize=None)
def converted(name):
    """(Vocab, TOKENIZR.BIN bytes): reading a GGUF's vocabulary takes seconds, once per run."""
    vocab = tv2.from_gguf(vocab_path(name))
    return vocab, tv2.encode(vocab)


def toktest(texts, parse_special=False, add_bos=False):
    body = [struct.pack("<II", parse_special | add_bos << 1, len(texts))]
    for t in texts:
        data = t.encode("utf-8") if isinstance(t, str) else t
        body.append(struct.pack("<I", len(data)) + data)
    return b"".join(body)


def kernel_tokenize(tmp_path, tok_bytes, texts, **kw):
    """Token id lists the real runtime computes for `texts`."""
    image = make_image(tmp_path / "tok.img", {"/TOKENIZR.BIN": tok_bytes, "/TOKTEST.BIN": toktest(texts, **kw)},
                       part_kib=32768)
    proc = subprocess.run([str(hosted_program()), str(image), "--tokenize"], capture_output=True, timeout=120)
    out = proc.stdout.decode("utf-8", errors="replace")
    assert proc.returncode == 0, out[-2000:]
    lines = [line for line in out.splitlines() if line.startswith("ids:")]
    assert len(lines) == len(texts), out[-2000:]
    return [[int(x) for x in line[4:].split()] for line in lines]


def check_vocab(tmp_path, name):
    path = vocab_path(name)
    texts, expected = cases(path)
    vocab, data = converted(name)
    got = kernel_tokenize(tmp_path, data, texts)
    wrong = [(t, g, e) for t, g, e in zip(texts, got, expected) if g != e]
    assert not wrong, f"{len(wrong)} of {len(texts)} differ, first: {wrong[0]!r}"
    ref = [vocab.tokenize(t, add_special=False, parse_special=False) for t in texts]
    assert ref == expected


@needs_mtools
@pytest.mark.parametrize("name", REQUIRED)
def test_kernel_matches_llama_cpp_vectors(tmp_path, name):
    check_vocab(tmp_path, name)


@needs_mtools
@pytest.mark.parametrize("name", MORE)
def test_kernel_matches_more_llama_cpp_vectors(tmp_path, name):
    """smollm's split (starcoder uses it), another SentencePiece vocabulary (phi-3)."""
    check_vocab(tmp_path, name)


@needs_mtools
@pytest.mark.skipif(os.environ.get("BAREFLOW_SLOW_TESTS") != "1", reason="slow: set BAREFLOW_SLOW_TESTS=1")
@pytest.mark.parametrize("name", SLOW)
def test_kernel_matches_slow_llama_cpp_vectors(tmp_path, name):
    check_vocab(tmp_path, name)


@needs_mtools
def test_special_tokens_bos_and_utf8(tmp_path):
    """Special-token texts map to their ids (longest first), add_bos puts BOS first, and
    multi-byte characters unknown to the vocabulary become <0xXX> byte tokens."""
    vocab, data = converted("llama-spm")
    texts = ["<s>Hello</s> world", "Café 東京 🙂", "a<unk>b"]
    got = kernel_tokenize(tmp_path, data, texts, parse_special=True, add_bos=True)
    assert got == [vocab.tokenize(t) for t in texts]
    assert got[0][:2] == [1, 1] and 2 in got[0]            # BOS added, then "<s>" as BOS, "</s>" as EOS
    assert got[2][2] == 0 or 0 in got[2]                    # "<unk>" is token 0
    emoji = vocab.tokenize("🙂", add_special=False, parse_special=False)
    assert [vocab.pieces[i] for i in emoji[1:]] == [b"<0xF0>", b"<0x9F>", b"<0x99>", b"<0x82>"]

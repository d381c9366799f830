"""TinyLlama-1.1B's exact shape (random Q4_0 weights, the llama SentencePiece vocabulary): the
image builds and the hosted runtime generates.  Writing the 620 MB GGUF and the image takes
minutes, so it is opt-in (BAREFLOW_SLOW_TESTS=1); tools/bench_gguf.py --tinyllama boots it in QEMU.
"""
import sys
from pathlib import Path

import pytest

from buildutil import hosted, scons

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fetch_models  # noqa: E402
import gen_tinyllama_gguf  # noqa: E402


@pytest.mark.slow
def test_tinyllama_shape_builds_and_generates(tmp_path):
    import json
    vocab = fetch_models.llama_vocab_path("llama-spm")
    if not vocab.is_file():
        pytest.skip(f"{vocab} absent (tools/setup.sh caches it from the llama-cpp-python sdist)")
    gguf = gen_tinyllama_gguf.write(tmp_path / "tiny.gguf", vocab)
    proc = scons(tmp_path / "build", "image", "hosted", f"MODEL={gguf}", "STEPS=7", "SEQ_LEN=512",
                 "PROMPT=Once upon a time", timeout=3600)
    assert "kept F32 x45, Q4_0 x156" in proc.stdout
    weights = (tmp_path / "build" / "model" / "WEIGHTS.BIN").stat().st_size
    assert abs(weights - gguf.stat().st_size) < 0.02 * gguf.stat().st_size      # Q4_0 blocks, not floats
    code, out = hosted(tmp_path / "build" / "bareflow-hosted", tmp_path / "build" / "bareflow.img", timeout=1800)
    assert code == 0, out[-3000:]
    assert "dim=2048 hidden=5632 layers=22 heads=32 kv_heads=4 vocab=32000" in out
    r = json.loads([l for l in out.splitlines() if l.startswith("BAREFLOW-RESULT ")][-1].split(" ", 1)[1])
    assert r["prompt_tokens"] == [1, 9038, 2501, 263, 931]      # llama SPM ids (ggml-vocab-llama-spm .out)
    assert len(r["tokens"]) == 3 and all(0 <= t < 32000 for t in r["tokens"])

"""tools/llamacpp.py's errors without building llama.cpp: each missing piece is named, nothing is
left half-extracted or half-written.  (The build itself is too slow for CI: the benchmark and
report scripts pay it on first use.)"""
import io
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import llamacpp  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BAREFLOW_CACHE", str(tmp_path))
    return tmp_path


def test_absent_sdist_names_it_and_setup(cache):
    with pytest.raises(llamacpp.LlamaCppError) as e:
        llamacpp.ensure_built(quiet=True)
    msg = str(e.value)
    assert str(llamacpp.sdist_path()) in msg and "tools/setup.sh" in msg and "online" in msg
    assert str(cache) in str(llamacpp.sdist_path())
    assert not llamacpp.source_dir().exists() and not llamacpp.build_dir().exists()


def test_sdist_without_llama_cpp_names_the_member_and_leaves_nothing(cache):
    sdist = llamacpp.sdist_path()
    sdist.parent.mkdir(parents=True)
    with tarfile.open(sdist, "w:gz") as tar:        # a tarball without vendor/llama.cpp
        data = b"not llama.cpp"
        info = tarfile.TarInfo(f"llama_cpp_python-{llamacpp.VERSION}/README.md")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(llamacpp.LlamaCppError, match="vendor/llama.cpp") as e:
        llamacpp.ensure_built(quiet=True)
    assert str(sdist) in str(e.value)
    assert not llamacpp.source_dir().exists()
    assert list(llamacpp.source_dir().parent.iterdir()) == []       # no extract.* left behind


def test_missing_cmake_is_named(cache, monkeypatch):
    src = llamacpp.source_dir()
    src.mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("project(x)\n")
    monkeypatch.setenv("PATH", str(cache / "empty-bin"))
    with pytest.raises(llamacpp.LlamaCppError, match=r"^cmake not found on PATH"):
        llamacpp.ensure_built(quiet=True)


def test_unknown_tool_and_missing_gguf_are_named(cache):
    with pytest.raises(llamacpp.LlamaCppError, match="'llama-server'"):
        llamacpp.binary("llama-server")
    with pytest.raises(llamacpp.LlamaCppError, match="nope.gguf"):
        llamacpp.requantize(cache / "nope.gguf")


def _fake_binaries():
    """Executable stand-ins for the three llama.cpp tools where the cache keeps them."""
    for name in llamacpp.TOOLS:
        p = llamacpp.binary(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)


def test_cached_binaries_skip_the_build(cache):
    """When all three tools exist nothing is extracted or configured (no sdist needed)."""
    _fake_binaries()
    assert llamacpp.ensure_built(quiet=True) == {n: llamacpp.binary(n) for n in llamacpp.TOOLS}
    assert not llamacpp.source_dir().exists()


def test_cli_reports_the_error_and_fails(cache, capsys):
    assert llamacpp.main(["build"]) == 1
    assert "llamacpp: error: llama-cpp-python" in capsys.readouterr().err


def test_greedy_program_needs_the_build_first(cache):
    """The report's llama.cpp side (tools/llamacpp_greedy.cpp) names the absent sdist too."""
    with pytest.raises(llamacpp.LlamaCppError, match="sdist not found"):
        llamacpp.greedy_tool()
    assert llamacpp.GREEDY_SOURCE.is_file()


def test_greedy_program_names_missing_libraries(cache):
    """Binaries present but the libraries gone (a half-deleted cache): the message lists them."""
    _fake_binaries()
    (llamacpp.source_dir() / "include").mkdir(parents=True)
    (llamacpp.source_dir() / "include" / "llama.h").write_text("")
    with pytest.raises(llamacpp.LlamaCppError, match=r"libllama\.a"):
        llamacpp.greedy_tool()
    assert not list(llamacpp.binary("llama-simple").parent.glob("bareflow-llamacpp-greedy*"))


def test_bench_weight_bytes_and_llamacpp_column(cache, tmp_path):
    """bench_tiers' GGUF figures: every tensor's bytes once, a separate token_embd only one row;
    the llama.cpp column exists only for the SmolLM2 models and parses llama-bench's JSON."""
    import numpy as np
    from gguf import GGUFReader, GGUFWriter
    import bench_tiers

    def write(path, tied):
        w = GGUFWriter(str(path), "llama")
        w.add_tensor("token_embd.weight", np.ones((10, 8), np.float32))       # 10 rows of 32 bytes
        w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), np.float32))      # 256 bytes
        if not tied:
            w.add_tensor("output.weight", np.ones((10, 8), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return GGUFReader(str(path))
    assert bench_tiers.gguf_weight_bytes_per_token(write(tmp_path / "t.gguf", True), True) == 320 + 256
    assert bench_tiers.gguf_weight_bytes_per_token(write(tmp_path / "s.gguf", False), False) == 32 + 256 + 320
    assert bench_tiers.llamacpp_columns("15M", tmp_path / "m.bin", tmp_path / "t.bin", 64, tmp_path) == []
    for name in llamacpp.TOOLS:                     # pretend it is built: the column's argv and parser
        p = llamacpp.binary(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
        p.chmod(0o755)
    [(label, argv, short, parse, short_parse)] = bench_tiers.llamacpp_columns("Q4_1", tmp_path / "m.gguf", None,
                                                                              64, tmp_path)
    assert argv[argv.index("-t") + 1] == "1" and argv[argv.index("-n") + 1] == "64"
    assert short[short.index("-n") + 1] == "2"
    assert parse('[{"n_gen": 64, "avg_ts": 80.0}]', "", 1.5) == (64, 1.5)
    assert parse('[{"n_gen": 2}]', "", 1.5) is None and short_parse('[{"n_gen": 2}]', "", 0.5) == (2, 0.5)

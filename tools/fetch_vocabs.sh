#!/usr/bin/env bash
# llama.cpp's tokenizer test vectors for tests/test_tokenizer_vectors.py: the llama-cpp-python
# 0.3.36 sdist carries vocabulary-only GGUFs (vendor/llama.cpp/models/ggml-vocab-*.gguf) with input
# texts (.inp) and expected ids (.out).  Cached in $BAREFLOW_CACHE (default ~/.cache/bareflow), outside
# the repository; fast when cached; offline it warns and the tests that need them skip.
set -uo pipefail
cd "$(dirname "$0")/.."
fetch_llama_cpp_vocabs() {
    local cache="${BAREFLOW_CACHE:-$HOME/.cache/bareflow}/llama-cpp-python-0.3.36"
    local sdist="$cache/llama_cpp_python-0.3.36.tar.gz" models="$cache/models"
    [ -e "$models/ggml-vocab-gpt-2.gguf.out" ] && return 0
    mkdir -p "$cache"
    if [ ! -e "$sdist" ]; then
        # --no-binary for this one package only: its build dependencies may come as wheels.
        .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$cache" >/dev/null 2>&1 || {
            echo "setup: warning: could not download the llama-cpp-python 0.3.36 sdist (offline?);" \
                 "the llama.cpp tokenizer-vector tests will skip" >&2; return 0; }
    fi
    local tmp; tmp=$(mktemp -d "$cache/extract.XXXXXX")
    tar -xzf "$sdist" -C "$tmp" --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*' &&
        rm -rf "$models" && mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp/models" "$models"
    rm -rf "$tmp"
}
fetch_llama_cpp_vocabs

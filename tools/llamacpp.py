#!/usr/bin/env python3
"""llama.cpp as an outside reference: build its CPU tools from the llama-cpp-python sdist, cached.

The only llama.cpp reachable from here is the `vendor/llama.cpp` tree inside PyPI's
llama-cpp-python==0.3.36 sdist, which tools/setup.sh (tools/fetch_vocabs.sh) downloads to
$BAREFLOW_CACHE/llama-cpp-python-0.3.36/ (default ~/.cache/bareflow).  This module extracts that
tree once (…/src/llama.cpp) and builds `llama-simple`, `llama-bench` and `llama-quantize` with
cmake into $BAREFLOW_CACHE/llama.cpp-build-0.3.36: Release, CPU backend only, static, no OpenMP
(callers choose the thread count: the benchmarks pass `-t 1`), no server/tests/HTTPS, and
-DGGML_NATIVE=ON (ggml picks the best SIMD this CPU has, as a user building it here would).
A build takes ~5-10 minutes on two busy cores, so tools/setup.sh does not do it: the benchmark
and report scripts call ensure_built() and pay it on first use; afterwards it returns at once.

    python tools/llamacpp.py build            # build (or find) the tools, print their paths
    python tools/llamacpp.py q8_0             # also write the Q8_0 requantisation of SmolLM2

It also builds tools/llamacpp_greedy.cpp (our program on llama.cpp's API: greedy, one thread,
token ids printed) for tools/report_llamacpp.py.

Errors are LlamaCppError naming what is missing (the sdist, cmake, a C++ compiler, a binary the
build did not produce) and leave no half-extracted tree or half-written GGUF under a final name.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "0.3.36"          # llama-cpp-python release whose vendor/llama.cpp we build
TOOLS = ("llama-simple", "llama-bench", "llama-quantize")
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_OPENMP=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_EXAMPLES=ON",
]


class LlamaCppError(RuntimeError):
    """llama.cpp cannot be built or run here; the message names the missing piece."""


def cache_root() -> Path:
    return Path(os.environ.get("BAREFLOW_CACHE") or Path.home() / ".cache" / "bareflow")


def sdist_path() -> Path:
    """The llama-cpp-python sdist tools/setup.sh downloads (a .tar.gz of 76.6 MB)."""
    return cache_root() / f"llama-cpp-python-{VERSION}" / f"llama_cpp_python-{VERSION}.tar.gz"


def source_dir() -> Path:
    return cache_root() / f"llama-cpp-python-{VERSION}" / "src" / "llama.cpp"


def build_dir() -> Path:
    return cache_root() / f"llama.cpp-build-{VERSION}"


def binary(name: str) -> Path:
    """Path of a built tool (it may not exist yet).  name: one of TOOLS."""
    if name not in TOOLS:
        raise LlamaCppError(f"llama.cpp tool {name!r} is not one this module builds ({', '.join(TOOLS)})")
    return build_dir() / "bin" / name


def _extract(sdist: Path, dest: Path) -> None:
    """Extract the sdist's vendor/llama.cpp to dest via a temporary directory beside it."""
    if not sdist.is_file():
        raise LlamaCppError(f"llama-cpp-python {VERSION} sdist not found at {sdist}: "
                            f"run tools/setup.sh while online (it downloads the sdist)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="extract.", dir=dest.parent))
    try:
        member = f"llama_cpp_python-{VERSION}/vendor/llama.cpp"
        proc = subprocess.run(["tar", "-xzf", str(sdist), "-C", str(tmp), member], capture_output=True, text=True)
        if proc.returncode or not (tmp / member / "CMakeLists.txt").is_file():
            raise LlamaCppError(f"{sdist}: cannot extract {member}: {proc.stderr.strip()[-500:] or 'no CMakeLists.txt'}")
        os.replace(tmp / member, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _need(program: str, why: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise LlamaCppError(f"{program} not found on PATH: needed {why} (tools/setup.sh installs it)")
    return path


def ensure_built(jobs: int = 2, quiet: bool = False) -> dict:
    """Build llama-simple, llama-bench and llama-quantize unless all three exist.

    Returns {tool name: Path}.  Prints one progress line when it builds (not when cached).
    Raises LlamaCppError when the sdist, cmake or a C/C++ compiler is missing, or the build fails
    (the message ends with the build log's tail)."""
    paths = {name: binary(name) for name in TOOLS}
    if all(p.is_file() and os.access(p, os.X_OK) for p in paths.values()):
        return paths
    src = source_dir()
    if not (src / "CMakeLists.txt").is_file():
        _extract(sdist_path(), src)
    cmake = _need("cmake", "to build llama.cpp")
    if not (shutil.which("c++") or shutil.which("g++")):
        raise LlamaCppError("no C++ compiler (c++/g++) on PATH: needed to build llama.cpp")
    if not quiet:
        print(f"llama.cpp: building {', '.join(TOOLS)} into {build_dir()} (first use; ~5-10 min) ...",
              file=sys.stderr, flush=True)
    steps = ([cmake, "-S", str(src), "-B", str(build_dir()), *CMAKE_FLAGS],
             [cmake, "--build", str(build_dir()), f"-j{jobs}", "--target", *TOOLS])
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            raise LlamaCppError(f"llama.cpp build failed ({' '.join(argv[:3])} ...):\n"
                                f"{(proc.stdout + proc.stderr)[-3000:]}")
    missing = [name for name, p in paths.items() if not p.is_file()]
    if missing:
        raise LlamaCppError(f"llama.cpp build finished without {', '.join(missing)} in {build_dir() / 'bin'}")
    return paths


GREEDY_SOURCE = Path(__file__).resolve().parent / "llamacpp_greedy.cpp"


def greedy_tool() -> Path:
    """Build (once; again when its source is newer) tools/llamacpp_greedy.cpp against the built
    libraries: llama.cpp's greedy decoding on one thread, printing token ids.  Raises LlamaCppError."""
    ensure_built()
    exe = build_dir() / "bin" / "bareflow-llamacpp-greedy"
    if exe.is_file() and exe.stat().st_mtime >= GREEDY_SOURCE.stat().st_mtime:
        return exe
    src, b = source_dir(), build_dir()
    if not (src / "include" / "llama.h").is_file():
        _extract(sdist_path(), src)
    libs = [b / "src" / "libllama.a", *(b / "ggml" / "src" / f"lib{n}.a" for n in ("ggml", "ggml-cpu", "ggml-base"))]
    missing = [str(p) for p in libs if not p.is_file()]
    if missing:
        raise LlamaCppError(f"llama.cpp libraries missing (rebuild: delete {b}): {', '.join(missing)}")
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise LlamaCppError("no C++ compiler (c++/g++) on PATH: needed to build tools/llamacpp_greedy.cpp")
    part = exe.with_name(exe.name + ".part")
    proc = subprocess.run([cxx, "-O2", "-std=c++17", f"-I{src / 'include'}", f"-I{src / 'ggml' / 'include'}",
                           str(GREEDY_SOURCE), *map(str, libs), "-lpthread", "-ldl", "-lm", "-o", str(part)],
                          capture_output=True, text=True)
    if proc.returncode:
        part.unlink(missing_ok=True)
        raise LlamaCppError(f"cannot build {GREEDY_SOURCE.name}:\n{proc.stderr[-2000:]}")
    os.replace(part, exe)
    return exe


def greedy(model: Path, prompt: str, n_predict: int) -> tuple:
    """llama.cpp's greedy continuation of `prompt`: (prompt ids, generated ids, generated bytes).
    At most n_predict tokens; stops early at the vocabulary's end-of-generation tokens."""
    proc = subprocess.run([str(greedy_tool()), str(model), str(n_predict), prompt], capture_output=True, text=True)
    if proc.returncode:
        raise LlamaCppError(f"llamacpp_greedy {model} failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    ids = {"P": [], "G": []}
    text = b""
    for line in proc.stdout.splitlines():
        kind, tid, hexed = (line.split(" ") + [""])[:3]
        ids[kind].append(int(tid))
        if kind == "G":
            text += bytes.fromhex(hexed)
    return ids["P"], ids["G"], text


def requantize(src: Path, qtype: str = "Q8_0", dest: Path | None = None) -> Path:
    """Write (once) `src` requantised to `qtype` with llama-quantize --allow-requantize.

    src: a GGUF; dest defaults to src's name with its type suffix replaced (…Q4_1.gguf ->
    …Q8_0.gguf) in the same directory.  Note the result inherits src's rounding: a Q8_0 made
    from a Q4_1 file holds the Q4_1 values requantised, not the original weights."""
    src = Path(src)
    if not src.is_file():
        raise LlamaCppError(f"GGUF to requantise not found: {src}")
    if dest is None:
        stem = src.name[:-len(".gguf")] if src.name.endswith(".gguf") else src.name
        base = stem.rsplit(".", 1)[0] if "." in stem else stem
        dest = src.with_name(f"{base}.{qtype}.gguf")
    dest = Path(dest)
    if dest.is_file():
        return dest
    tool = ensure_built()["llama-quantize"]
    part = dest.with_name(dest.name + ".part")
    proc = subprocess.run([str(tool), "--allow-requantize", str(src), str(part), qtype, "1"],
                          capture_output=True, text=True)
    if proc.returncode or not part.is_file():
        part.unlink(missing_ok=True)
        raise LlamaCppError(f"llama-quantize {src} -> {qtype} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    os.replace(part, dest)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "q8_0"])
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        for name, path in ensure_built(args.jobs).items():
            print(f"{name}: {path}")
        if args.what == "q8_0":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import fetch_models
            print(f"Q8_0: {requantize(fetch_models.smollm2_path())}")
    except LlamaCppError as e:
        print(f"llamacpp: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

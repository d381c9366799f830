#!/usr/bin/env python3
"""GGUF benchmark: hosted resident memory and speed for SmolLM2-135M Q4_1, and the TinyLlama-1.1B
shape (random Q4_0) booted in QEMU: time to the first token and tokens/s.

Prints figures; asserts nothing (machines are shared: read the ratios).  The memory figure is the
hosted program's peak resident set (getrusage of the child) against 1.2 x (GGUF file + KV cache
for the run's steps), the target the weights-in-place design promises.  Models come from the cache
tools/setup.sh fills (SmolLM2) and tools/gen_tinyllama_gguf.py writes (TinyLlama shape).

    python tools/bench_gguf.py [--steps 48] [--tinyllama] [--tiny-steps 8] [--firmware bios]
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import fetch_models  # noqa: E402
from benchutil import result_of, scons  # noqa: E402
import gen_tinyllama_gguf  # noqa: E402
from bareflow.boot import qemu as qemu_runner  # noqa: E402
from bareflow.model import gguf_model  # noqa: E402


# Forked from this process, the child's peak RSS would start at ours (we hold the GGUF's metadata):
# a small fresh interpreter runs the program and reports its peak with wait4.
_WAIT4 = ("import os, subprocess, sys\n"
          "p = subprocess.Popen(sys.argv[1:], stdout=sys.stderr.fileno())\n"
          "print(os.wait4(p.pid, 0)[2].ru_maxrss * 1024)\n")


def run_measured(cmd):
    """(output text, peak resident bytes of that one process)."""
    proc = subprocess.run([sys.executable, "-S", "-c", _WAIT4, *cmd], capture_output=True, check=True)
    return proc.stderr.decode("utf-8", "replace"), int(proc.stdout)


def kv_bytes(cfg, steps):
    return 2 * cfg.n_layers * steps * cfg.n_kv_heads * cfg.head_dim * 4


def bench_smollm2(build, steps):
    model = fetch_models.smollm2_path()
    if not model.is_file():
        print(f"SmolLM2: {model} absent (run tools/setup.sh online)")
        return
    scons(build, "image", "hosted", f"MODEL={model}", f"STEPS={steps}")
    cfg = gguf_model.read_gguf(model).config
    t0 = time.time()
    out, rss = run_measured([str(build / "bareflow-hosted"), str(build / "bareflow.img")])
    wall = time.time() - t0
    r = result_of(out)
    size, kv = model.stat().st_size, kv_bytes(cfg, steps)
    limit = 1.2 * (size + kv)
    print(f"SmolLM2-135M Q4_1 hosted, {steps} steps: {r['tokens_per_second']:.2f} tok/s, wall {wall:.1f} s")
    print(f"  resident {rss / 2**20:.1f} MiB; GGUF {size / 2**20:.1f} MiB + KV cache {kv / 2**20:.1f} MiB; "
          f"ratio {rss / (size + kv):.3f} (target <= 1.2, limit {limit / 2**20:.1f} MiB): "
          f"{'within' if rss <= limit else 'OVER'}")


def bench_tinyllama(build, steps, firmware, memory):
    gguf = gen_tinyllama_gguf.default_out()
    if not gguf.is_file():
        vocab = fetch_models.llama_vocab_path("llama-spm")
        if not vocab.is_file():
            print(f"TinyLlama shape: {vocab} absent (run tools/setup.sh online)")
            return
        gguf.parent.mkdir(parents=True, exist_ok=True)
        gen_tinyllama_gguf.write(gguf, vocab)
    # Both ISA levels: under `-cpu max` the kernel runs the x86-64-v3 modules (AVX2 costs TCG far
    # fewer helper calls per float than SSE2), and -smp 2 splits the matmuls over two vCPUs.
    scons(build, "image", "hosted", f"MODEL={gguf}", f"STEPS={steps}", "SEQ_LEN=2048", "ISA=x86-64,x86-64-v3")
    proc = subprocess.run([str(build / "bareflow-hosted"), str(build / "bareflow.img")], capture_output=True)
    r = result_of(proc.stdout.decode("utf-8", "replace"))
    cps = r["cycles_per_second"] or 1
    print(f"TinyLlama-1.1B shape (random Q4_0) hosted, {steps} steps: {r['tokens_per_second']:.3f} tok/s, "
          f"first token after {r['boot_cycles'] / cps:.1f} s")
    cmd = qemu_runner.qemu_command(image=build / "bareflow.img", firmware=firmware, memory=memory, cpu="max",
                                   smp=2)
    t0 = time.time()
    run = qemu_runner.run_qemu(cmd, timeout=6 * 3600)
    wall = time.time() - t0
    try:
        r = result_of(run.output)
    except IndexError:
        print(f"  QEMU ({firmware}) gave no result line (status {run.status}):\n{run.output[-1500:]}")
        return
    cps = r["cycles_per_second"] or 1
    print(f"  QEMU TCG ({firmware}, -m {memory}, -cpu max -smp 2, {r['isa']}): first token {r['boot_cycles'] / cps:.1f} s after the runtime "
          f"started, {r['tokens_per_second']:.4f} tok/s, whole boot {wall:.0f} s wall")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--tinyllama", action="store_true", help="also build and boot the TinyLlama shape")
    ap.add_argument("--tiny-steps", type=int, default=8)
    ap.add_argument("--firmware", default="bios", choices=("bios", "uefi"))
    ap.add_argument("--memory", default="2G")
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "bench-gguf")
    args = ap.parse_args(argv)
    bench_smollm2(args.build / "smollm2", args.steps)
    if args.tinyllama:
        bench_tinyllama(args.build / "tinyllama", args.tiny_steps, args.firmware, args.memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())

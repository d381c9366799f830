#!/usr/bin/env python3
"""Multi-core benchmark: tokens/s on 1 and 2 cores, hosted build and QEMU, side by side.

Prints figures; asserts nothing.  Models are random float32 llama2.c checkpoints generated here
with the shapes of llama2.c's stories15M (dim 288, 6 blocks, 6 heads, hidden 768, vocab 32000)
and stories42M (dim 512, 8 blocks, 8 query / 4 key-value heads, hidden 1376, vocab 32000), plus
a random tokenizer of the same vocabulary: token speed depends on the shapes, not on the values.
Each model is built once (POLICY=fixed, one tier), then the hosted program runs it with
`cores = 1` and `cores = 2` alternately, several times, and the medians are compared - ratios
measured in the same minute on the same (shared, noisy) machine.  SmolLM2-135M (the Q4_1 GGUF
tools/setup.sh caches, tools/fetch_models.py) is measured the same way in the same run, or
skipped with a message when it is not cached.  QEMU runs the 15M shape with -smp 1 and -smp 2
(multi-threaded TCG) and prints the host CPU time QEMU used, which shows whether idle APs
spin.  Per split layer the hosted runs also give the split cost per call,
(cycles per call on 2 cores) - (cycles per call on 1 core) / 2: the figure the built-in
policy's SPLIT_CYCLES comes from (bareflow/policy/cores.py).  The load average is printed at
the start and after each model: read ratios measured under load with care.

    python tools/bench_smp.py [--runs 3] [--steps 32] [--tier O2] [--isa x86-64-v3] [--no-qemu]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import fetch_models  # noqa: E402
from benchutil import result_of, scons  # noqa: E402

from bareflow.model.checkpoint import ModelConfig, tensor_shapes  # noqa: E402
from bareflow.model.tokenizer import write_tokenizer  # noqa: E402

SHAPES = {
    "15M-shape": ModelConfig(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=32000,
                             seq_len=256, shared_classifier=True),
    "42M-shape": ModelConfig(dim=512, hidden_dim=1376, n_layers=8, n_heads=8, n_kv_heads=4, vocab_size=32000,
                             seq_len=256, shared_classifier=True),
}
PARTITION_OFFSET = 2048 * 512


def write_random_checkpoint(path, config, seed=1):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(config.header_bytes())
        for name, shape in tensor_shapes(config):
            scale = 1.0 if name.startswith("rms") else 0.02
            block = (rng.standard_normal(shape, dtype=np.float32) * scale).astype("<f4")
            if name.startswith("rms"):
                block = np.abs(block) + 0.5
            f.write(block.tobytes())


def write_random_tokenizer(path, vocab):
    """<unk>, <s>, </s>, every printable ASCII character, then made-up pieces up to `vocab`."""
    pieces = [b"<unk>", b"<s>", b"</s>"] + [bytes([c]) for c in range(32, 127)]
    pieces += [f"p{i}".encode() for i in range(vocab - len(pieces))]
    write_tokenizer(path, pieces, [float(-i) for i in range(vocab)])


def load():
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def with_cores(build, cores, steps):
    """A copy of the build's image with `cores` and `steps` set in its /BAREFLOW.CFG (the build's
    other keys, such as a chat template, kept)."""
    image = build / f"cores{cores}.img"
    shutil.copyfile(build / "bareflow.img", image)
    cfg = build / f"cores{cores}.cfg"
    keep = [line for line in (build / "image" / "BAREFLOW.CFG").read_text().splitlines()
            if line.split("=")[0].strip() not in ("steps", "cores")]
    cfg.write_text("\n".join(keep + [f"steps = {steps}", f"cores = {cores}"]) + "\n")
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{PARTITION_OFFSET}", str(cfg), "::/BAREFLOW.CFG"], check=True,
                   env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    return image


def hosted_rate(build, image):
    out = subprocess.run([str(build / "bareflow-hosted"), str(image)], capture_output=True, text=True,
                         check=True).stdout
    r = result_of(out)
    return r["tokens_per_second"], r


def qemu_rate(image, smp, memory):
    """(tokens/s, host CPU seconds QEMU used, wall seconds) of one boot."""
    cmd = ["qemu-system-x86_64", "-display", "none", "-serial", "stdio", "-no-reboot", "-m", memory,
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-drive", f"file={image},format=raw,if=ide",
           "-smp", str(smp)] + (["-accel", "tcg,thread=multi"] if smp > 1 else [])
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=3600).stdout
    wall, after = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return result_of(out.decode("utf-8", "replace"))["tokens_per_second"], cpu, wall


SPLIT = ("qkv", "attn", "attnout", "ffn", "classify")


def cycles_per_call(result):
    """Split layer -> cycles per call at the tier it ran most calls at."""
    out = {}
    for name in SPLIT:
        layer = result["layers"][name]
        top = max(range(4), key=lambda t: layer["calls"][t])
        if layer["calls"][top] and layer["cycles"][top]:
            out[name] = layer["cycles"][top] / layer["calls"][top]
    return out


def bench(name, build, args, qemu_memory):
    img1, img2 = with_cores(build, 1, args.steps), with_cores(build, 2, args.steps)
    one, two, tokens, per1, per2 = [], [], set(), {}, {}
    for _ in range(args.runs):                      # alternate, so drift hits both alike
        r1, res1 = hosted_rate(build, img1)
        r2, res2 = hosted_rate(build, img2)
        one.append(r1)
        two.append(r2)
        tokens.add((tuple(res1["tokens"]), tuple(res2["tokens"])))
        for per, res in ((per1, res1), (per2, res2)):
            for layer, cycles in cycles_per_call(res).items():
                per.setdefault(layer, []).append(cycles)
    same = all(a == b for a, b in tokens)
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"{name:10s} hosted  1 core {m1:8.2f} tok/s   2 cores {m2:8.2f} tok/s   x{m2 / m1:4.2f}   "
          f"tokens identical: {'yes' if same else 'NO'}   busy ms per core (2 cores): {res2['cores']['busy_ms']}")
    costs = [f"{layer} {statistics.median(per2[layer]) - statistics.median(per1[layer]) / 2:.0f}"
             for layer in SPLIT if layer in per1 and layer in per2]
    print(f"{'':10s} split cost per call, cycles (2-core call - 1-core call / 2): {', '.join(costs)}")
    if args.qemu and qemu_memory:
        (q1, c1, w1), (q2, c2, w2) = qemu_rate(img1, 1, qemu_memory), qemu_rate(img2, 2, qemu_memory)
        print(f"{name:10s} QEMU    -smp 1 {q1:8.2f} tok/s   -smp 2  {q2:8.2f} tok/s   x{q2 / q1:4.2f}   "
              f"host CPU {c1:.1f} s / {c2:.1f} s, wall {w1:.1f} s / {w2:.1f} s (whole boot)")
    print(f"{'':10s} {load()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--tier", default="O2")
    ap.add_argument("--isa", default="x86-64")
    ap.add_argument("--no-qemu", dest="qemu", action="store_false")
    ap.add_argument("--keep", help="build directory to keep (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-smp-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; {args.runs} runs of {args.steps} positions each, tier {args.tier}, "
          f"ISA {args.isa}; {load()}")
    common = ["POLICY=fixed", f"TIER={args.tier}", f"ISA={args.isa}", f"STEPS={args.steps}"]
    try:
        for name, config in SHAPES.items():
            d = work / name
            d.mkdir(exist_ok=True)
            model, tok = d / "model.bin", d / "tok.bin"
            if not model.exists():
                write_random_checkpoint(model, config)
                write_random_tokenizer(tok, config.vocab_size)
            scons(d / "build", "image", "hosted", f"MODEL={model}", f"TOKENIZER={tok}", *common)
            bench(name, d / "build", args, "256M" if name == "15M-shape" else None)
        smollm = fetch_models.smollm2_path()
        if smollm.is_file():
            d = work / "smollm2"
            scons(d / "build", "image", "hosted", f"MODEL={smollm}", *common)
            bench("SmolLM2", d / "build", args, None)
        else:
            print(f"SmolLM2    not measured: {smollm} is not cached (tools/setup.sh fetches it when online)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

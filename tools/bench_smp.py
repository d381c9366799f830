#!/usr/bin/env python3
"""Multi-core benchmark: tokens/s on 1 and 2 cores, hosted build and QEMU, side by side.

Prints figures; asserts nothing.  Models are random float32 llama2.c checkpoints generated here
with the shapes of llama2.c's stories15M (dim 288, 6 blocks, 6 heads, hidden 768, vocab 32000)
and stories42M (dim 512, 8 blocks, 8 query / 4 key-value heads, hidden 1376, vocab 32000), plus
a random tokenizer of the same vocabulary: token speed depends on the shapes, not on the values;
and a control, "42M-in-L3" (one 42M block, a 2048-token vocabulary), whose weights fit in the
last-level cache.
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

What limits the 2-core speed-up is shown per model (medians of the runs): a table of every layer
with its cycles per call on 1 and 2 cores and the speed-up, and for the float32 shapes the bytes
each call streams (weights; the KV cache for attn) and the GB/s that makes on 1 and 2 cores; the
share of a token spent in layers that are never split (Amdahl's bound for 2 cores); and how the
split went (the result line's `cores` counters, docs/result-line.md): pieces of the worker's
chunks core 0 ran because nobody had started them, core 0's wait for the worker's pieces, worker
parks and the mean post-to-first-piece time with and without a park (a wake-up).  "Best of" gives
the ratio of the fastest runs too, the ones least disturbed by other load.  The machine's read bandwidth with 1 and
2 threads (tools/membw.c, built here with zig's clang) is measured before the first model and
after each, in the same run.

    python tools/bench_smp.py [--runs 3] [--steps 32] [--tier O2] [--isa x86-64-v3] [--no-qemu]
                              [--models 42M-shape,SmolLM2]
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
    # One block of the 42M shape and a 2048-token vocabulary: 15.7 MB of weights, which stay in
    # the 32 MiB L3 between tokens.  qkv, attnout and ffn calls do exactly the 42M shape's work,
    # so their speed-up here against the 42M shape's (which streams 158 MB a token from DRAM)
    # separates what the memory bus costs from what the split itself costs.
    "42M-in-L3": ModelConfig(dim=512, hidden_dim=1376, n_layers=1, n_heads=8, n_kv_heads=4, vocab_size=2048,
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


def membw_tool(work):
    """Path of tools/membw.c built for this machine (zig's clang, -O2 -march=native), or None with a
    message when it cannot be built."""
    exe = work / "membw"
    if not exe.exists():
        done = subprocess.run([sys.executable, "-m", "ziglang", "cc", "-O2", "-march=native", "-pthread",
                               str(ROOT / "tools" / "membw.c"), "-o", str(exe)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"bandwidth  not measured: building tools/membw.c failed: {done.stderr.strip()[-500:]}")
            return None
    return exe


def bandwidth(exe, mib=256, repeats=5):
    """Print the read bandwidth with 1 and 2 threads (GB/s, best of `repeats`) and the load."""
    if exe is None:
        return
    out = subprocess.run([str(exe), str(mib), "2", str(repeats)], capture_output=True, text=True, check=True).stdout
    gbps = {int(t): float(g) for _, t, g in (line.split() for line in out.splitlines())}
    print(f"bandwidth  read {mib} MiB per thread: 1 thread {gbps[1]:.1f} GB/s, 2 threads {gbps[2]:.1f} GB/s, "
          f"x{gbps[2] / gbps[1]:.2f}; {load()}")


def bytes_per_call(config, steps):
    """Layer -> bytes one call reads from its big operands, for a float32 llama2.c model: the
    weight matrices, and for attn the KV cache rows every query head reads (mean over the
    positions 0..steps-1; under grouped-query attention query heads re-read a key-value head, from
    cache).  The layer's small vectors are left out."""
    c, f32 = config, 4
    kv = c.kv_dim
    return {"qkv": (c.dim + 2 * kv) * c.dim * f32, "attnout": c.dim * c.dim * f32,
            "ffn": 3 * c.dim * c.hidden_dim * f32, "classify": c.vocab_size * c.dim * f32,
            "attn": c.n_heads * c.head_size * 2 * f32 * (steps + 1) / 2}


def layer_totals(result):
    """Layer -> (calls, cycles) over every tier."""
    return {name: (sum(layer["calls"]), sum(layer["cycles"])) for name, layer in result["layers"].items()}


def report_layers(name, runs1, runs2, config, steps):
    """Print the per-layer table, the serial share of a token and the split counters (medians)."""
    cps = runs1[0]["cycles_per_second"]
    med = statistics.median
    t1 = [layer_totals(r) for r in runs1]
    t2 = [layer_totals(r) for r in runs2]
    sizes = bytes_per_call(config, steps) if config else {}
    print(f"{'':10s} {'layer':9s} {'calls':>6s} {'cycles/call 1 core':>19s} {'2 cores':>11s} {'speed-up':>8s}"
          + ("   MB/call  GB/s 1 core  2 cores" if sizes else ""))
    serial1 = serial2 = total1 = total2 = 0.0
    for layer in runs1[0]["layers"]:
        calls = t1[0][layer][0]
        if not calls:
            continue
        c1 = med(t[layer][1] / t[layer][0] for t in t1)
        c2 = med(t[layer][1] / t[layer][0] for t in t2)
        total1 += c1 * calls
        total2 += c2 * calls
        if layer not in SPLIT:
            serial1 += c1 * calls
            serial2 += c2 * calls
        line = (f"{'':10s} {layer:9s} {calls:6d} {c1:19.0f} {c2:11.0f} {c1 / c2 if c2 else 0:8.2f}"
                + ("" if layer in SPLIT else "   (never split)"))
        if layer in sizes and c1 and c2:
            b = sizes[layer]
            line += f"   {b / 1e6:7.2f}  {b / (c1 / cps) / 1e9:11.2f}  {b / (c2 / cps) / 1e9:7.2f}"
        print(line)
    positions = t1[0]["embed"][0]
    # tokens_per_second counts generated tokens over the whole loop (prompt positions included)
    wall1 = med(cps * len(r["tokens"]) / r["tokens_per_second"] / positions for r in runs1)
    wall2 = med(cps * len(r["tokens"]) / r["tokens_per_second"] / positions for r in runs2)
    share = serial1 / total1
    print(f"{'':10s} per position, cycles: layers {total1 / positions:.0f} (1 core) / {total2 / positions:.0f} "
          f"(2 cores), wall {wall1:.0f} / {wall2:.0f}; never-split layers {serial1 / positions:.0f} / "
          f"{serial2 / positions:.0f} = {100 * share:.1f}% of the 1-core layer time, so at most "
          f"x{1 / (share + (1 - share) / 2):.2f} on 2 cores")
    k = [r["cores"] for r in runs2]
    if "stolen" in k[0]:
        pieces = med(c["pieces"][1] for c in k)
        woken = med(c["woken"][1] for c in k)
        chunks = med(c["pieces"][0] - c["stolen"] for c in k)      # split phases: one own chunk each
        claim = med(c["claim_ms"][1] / max(1, c["joined"][1]) * 1000 for c in k)
        wake = med(c["wake_ms"][1] / max(1, c["woken"][1]) * 1000 for c in k)
        print(f"{'':10s} split (2 cores, medians): {chunks:.0f} split phases; the worker ran {pieces:.0f} pieces, "
              f"core 0 took {med(c['stolen'] for c in k):.0f} nobody had started; core 0 waited "
              f"{med(c['wait_ms'] for c in k):.1f} ms for the worker's pieces; the worker parked "
              f"{med(c['parks'][1] for c in k):.0f} times in {positions} positions; post to first piece "
              f"{claim:.1f} us mean over the {med(c['joined'][1] for c in k):.0f} phases it joined, {wake:.1f} us "
              f"after a park ({woken:.0f} such)")


def bench(name, build, args, qemu_memory, config=None):
    img1, img2 = with_cores(build, 1, args.steps), with_cores(build, 2, args.steps)
    one, two, tokens, per1, per2, runs1, runs2 = [], [], set(), {}, {}, [], []
    for _ in range(args.runs):                      # alternate, so drift hits both alike
        r1, res1 = hosted_rate(build, img1)
        r2, res2 = hosted_rate(build, img2)
        one.append(r1)
        two.append(r2)
        runs1.append(res1)
        runs2.append(res2)
        tokens.add((tuple(res1["tokens"]), tuple(res2["tokens"])))
        for per, res in ((per1, res1), (per2, res2)):
            for layer, cycles in cycles_per_call(res).items():
                per.setdefault(layer, []).append(cycles)
    same = all(a == b for a, b in tokens)
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"{name:10s} hosted  1 core {m1:8.2f} tok/s   2 cores {m2:8.2f} tok/s   x{m2 / m1:4.2f}   "
          f"tokens identical: {'yes' if same else 'NO'}   busy ms per core (2 cores): {res2['cores']['busy_ms']}")
    print(f"{'':10s} best of {args.runs}: 1 core {max(one):.2f} tok/s, 2 cores {max(two):.2f} tok/s, "
          f"x{max(two) / max(one):.2f} (the runs least disturbed by other load)")
    costs = [f"{layer} {statistics.median(per2[layer]) - statistics.median(per1[layer]) / 2:.0f}"
             for layer in SPLIT if layer in per1 and layer in per2]
    print(f"{'':10s} split cost per call, cycles (2-core call - 1-core call / 2): {', '.join(costs)}")
    report_layers(name, runs1, runs2, config, args.steps)
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
    ap.add_argument("--models", default=",".join([*SHAPES, "SmolLM2"]),
                    help="comma-separated models to measure (default: %(default)s)")
    args = ap.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in (*SHAPES, "SmolLM2")]
    if unknown:
        ap.error(f"--models: unknown model {unknown[0]!r}; choose from {', '.join([*SHAPES, 'SmolLM2'])}")
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-smp-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; {args.runs} runs of {args.steps} positions each, tier {args.tier}, "
          f"ISA {args.isa}; {load()}")
    common = ["POLICY=fixed", f"TIER={args.tier}", f"ISA={args.isa}", f"STEPS={args.steps}"]
    try:
        membw = membw_tool(work)
        bandwidth(membw)
        for name, config in SHAPES.items():
            if name not in models:
                continue
            d = work / name
            d.mkdir(exist_ok=True)
            model, tok = d / "model.bin", d / "tok.bin"
            if not model.exists():
                write_random_checkpoint(model, config)
                write_random_tokenizer(tok, config.vocab_size)
            scons(d / "build", "image", "hosted", f"MODEL={model}", f"TOKENIZER={tok}", *common)
            bench(name, d / "build", args, "256M" if name == "15M-shape" else None, config)
            bandwidth(membw)
        smollm = fetch_models.smollm2_path()
        if "SmolLM2" not in models:
            pass
        elif smollm.is_file():
            d = work / "smollm2"
            scons(d / "build", "image", "hosted", f"MODEL={smollm}", *common)
            bench("SmolLM2", d / "build", args, None)
            bandwidth(membw)
        else:
            print(f"SmolLM2    not measured: {smollm} is not cached (tools/setup.sh fetches it when online)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""JIT benchmark (JIT=llvm, hosted): the run-time host-CPU tier against the best ahead-of-time
tier, per layer, and the 256-token total of the JIT policy (compiles included) against the best
fixed ahead-of-time tier.

The per-layer table runs every build with `cores = 1` (the layers whole on one core, and the
O3@host compiles inline, so the compiled code surely runs).  The 256-token totals run with every
core (`cores = all`): there the JIT policy's compiles run on core 1 while core 0 generates
(docs/jit.md, "Where compiles run"), and the table says how many finished and were swapped in.
The JIT policy is built twice: with CORES=all, where the build cannot count on a spare core and
the O3@host trigger is a whole compile's cycles, and with CORES=2, where it is only core 1's lost
split share, about half (docs/policies.md "Run-time rung"); both run on the same cores.

Prints figures; asserts nothing.  All builds are measured side by side in one run, with the
median of --runs runs each (the machine is shared).  Uses stories260K from ../shared/data when
present, else the synthetic model.  Needs LLVM 22 (tools/setup.sh).

    python tools/bench_jit.py [--steps 256] [--runs 5]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tools"))
from bench_runtime import qemu_first_token  # noqa: E402
from benchutil import result_of, scons  # noqa: E402

LAYERS = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]


PARTITION = 2048 * 512


def set_cores(image, cores):
    """Rewrite the `cores` line of the image's /BAREFLOW.CFG with mtools (an outside FAT16 writer)."""
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    text = subprocess.run(["mtype", "-i", f"{image}@@{PARTITION}", "::/BAREFLOW.CFG"], capture_output=True,
                          check=True, env=env).stdout.decode()
    lines = [l for l in text.splitlines() if not l.startswith("cores")] + [f"cores = {cores}"]
    cfg = image.with_suffix(".cfg")
    cfg.write_text("\n".join(lines) + "\n")
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{PARTITION}", str(cfg), "::/BAREFLOW.CFG"], check=True, env=env)


def run(build, runs, cores="1"):
    """[(result json, wall seconds)] of `runs` hosted runs, each on a fresh copy of the image
    with `cores = <cores>` in its /BAREFLOW.CFG."""
    out = []
    for _ in range(runs):
        image = build / "run.img"
        shutil.copyfile(build / "bareflow.img", image)
        set_cores(image, cores)
        start = time.perf_counter()
        text = subprocess.run([str(build / "bareflow-hosted"), str(image)], capture_output=True, text=True,
                              check=True).stdout
        wall = time.perf_counter() - start
        out.append((result_of(text), wall))
    return out


def per_call(results, layer, level):
    """Median cycles per call of `layer` at `level` (0..3) over the runs, or None."""
    values = [r["layers"][layer]["cycles"][level] / r["layers"][layer]["calls"][level]
              for r, _ in results if r["layers"][layer]["calls"][level]]
    return statistics.median(values) if values else None


def loop_seconds(results):
    return statistics.median(len(r["tokens"]) / r["tokens_per_second"] for r, _ in results if r["tokens_per_second"])


def qemu_boot(image):
    """(seconds to the kernel's first line, to 'generating', whole run) under QEMU TCG, SeaBIOS."""
    ready, _, total, res = qemu_first_token(image)
    return ready, total, res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-qemu", action="store_true", help="skip the boot-time comparison under QEMU")
    args = parser.parse_args()
    model = []
    if (SHARED / "stories260K.bin").exists():
        model = [f"MODEL={SHARED / 'stories260K.bin'}", f"TOKENIZER={SHARED / 'tok512.bin'}"]
    label = "stories260K" if model else "synthetic"
    common = [f"STEPS={args.steps}", "PROMPT=Once upon a time", "JIT=llvm", *model]
    with tempfile.TemporaryDirectory(prefix="bareflow-bench-jit-") as tmp:
        tmp = Path(tmp)
        fixed = {}
        for tier in ("O0", "O1", "O2", "O3", "O3@host"):
            build = tmp / f"fixed-{tier.replace('@', '-')}"
            scons(build, "image", "hosted", "POLICY=fixed", f"TIER={tier}", *common)
            fixed[tier] = run(build, args.runs)
        tiered = tmp / "tiered"
        scons(tiered, "image", "hosted", "POLICY=tiered", *common)
        tiered_runs = run(tiered, args.runs, cores="all")
        plain = tmp / "plain"                   # the same policy without the JIT: AOT tiers only
        scons(plain, "image", "hosted", "POLICY=tiered", *[a for a in common if a != "JIT=llvm"])
        plain_runs = run(plain, args.runs, cores="all")
        spare = tmp / "tiered-cores2"
        scons(spare, "image", "hosted", "POLICY=tiered", "CORES=2", *common)
        spare_runs = run(spare, args.runs, cores="all")
        all_cores = {t: run(tmp / f"fixed-{t}", args.runs, cores="all") for t in ("O0", "O1", "O2", "O3")}

        host = fixed["O3@host"][0][0]["jit"]["compiles"][0]
        print(f"hosted build, {label}, {args.steps} steps, median of {args.runs} runs; "
              f"host CPU as LLVM sees it: {host['cpu']} ({host['features']})")
        print(f"\nper layer, cycles per call: O3@host (compiled at run time) vs the best ahead-of-time tier")
        print(f"  {'layer':<9} {'best AOT':>14} {'O3@host':>10} {'speed-up':>9} {'compile (ms)':>13}")
        cps = fixed["O3@host"][0][0]["cycles_per_second"]
        for layer in LAYERS:
            aot = {t: per_call(fixed[t], layer, int(t[1])) for t in ("O0", "O1", "O2", "O3")}
            best = min((v, t) for t, v in aot.items() if v)
            jit = per_call(fixed["O3@host"], layer, 3)
            compile_ms = statistics.median(
                c["cycles"] for r, _ in fixed["O3@host"] for c in r["jit"]["compiles"] if c["layer"] == layer
            ) / cps * 1e3
            print(f"  {layer:<9} {best[0]:10.0f} {best[1]:>3} {jit:10.0f} {best[0] / jit:8.2f}x {compile_ms:12.1f}")

        print(f"\n{args.steps}-token run, every core (cores = all): generation loop (compiles on core 1, "
              f"off core 0) and whole program:")
        rows = [(f"fixed {t}", all_cores[t]) for t in ("O0", "O1", "O2", "O3")]
        best_name, best_runs = min(rows, key=lambda row: loop_seconds(row[1]))
        rows += [("tiered, JIT=none (AOT ladder)", plain_runs), ("JIT policy, CORES=all trigger", tiered_runs),
                 ("JIT policy, CORES=2 trigger", spare_runs)]
        base = loop_seconds(best_runs)
        for name, results in rows:
            loop = loop_seconds(results)
            wall = statistics.median(w for _, w in results)
            tried = [c for r, _ in results for c in r.get("jit", {}).get("compiles", [])]
            swapped = sum(c["ok"] for c in tried) / len(results)
            note = " (best fixed AOT)" if name == best_name else ""
            jit = f"   {len(tried) / len(results):.1f} compiles asked, {swapped:.1f} swapped in per run" if tried else ""
            asked = {}
            for c in tried:
                asked.setdefault(c["layer"], []).append(c["request_call"])
            jit += "".join(f"; {layer} asked at call {statistics.median(calls):.0f} ({len(calls)}/{len(results)} runs)"
                           for layer, calls in sorted(asked.items()))
            print(f"  {name:<32} loop {loop * 1e3:8.1f} ms {base / loop:6.2f}x   program {wall * 1e3:8.1f} ms"
                  f"{jit}{note}")

        if args.no_qemu or not shutil.which("qemu-system-x86_64"):
            return
        print("\nQEMU (TCG), SeaBIOS + syslinux, tiered policy: the cost of the 36 MB kernel")
        for name, build in (("JIT=none", plain), ("JIT=llvm", tiered)):
            image = build / "qemu.img"
            shutil.copyfile(build / "bareflow.img", image)
            ready, total, res = qemu_boot(image)
            size = (build / "kernel" / "KERNEL.BIN").stat().st_size
            jit = res.get("jit", {})
            extra = ""
            if jit:
                cps = res["cycles_per_second"]
                times = [c["cycles"] / cps for c in jit["compiles"]]
                extra = (f", LLVM start {jit['init_cycles'] / cps:.2f} s, {len(times)} compiles "
                         f"{min(times):.2f}-{max(times):.2f} s")
            print(f"  {name:<9} KERNEL.BIN {size / 1e6:6.1f} MB  boot to 'generating' {ready:6.2f} s  "
                  f"whole run {total:6.2f} s{extra}")


if __name__ == "__main__":
    main()

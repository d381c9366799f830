#!/usr/bin/env python3
"""The fuzzing campaign over the runtime's parsers (issue 8): build, seed, run, report.

    .venv/bin/python tools/fuzz_campaign.py --minutes 30 [--work DIR] [--targets config,model,...]

builds tools/fuzz/ (the driver, platform_fuzz.c, files_fuzz.c) with the runtime sources under
gcc -fsanitize=address,undefined -fno-sanitize-recover=all, generates a seed corpus from real
build outputs (the layer modules compiled by the project's pipeline, the synthetic model and
tokenizer, a rendered BAREFLOW.CFG, policy tables, and FAT16 images made by mkfs.fat + mtools,
none of them kept in the repository), adds tests/fuzz-corpus/ (inputs that once found a bug),
then runs the targets round-robin in chunks and prints, per target and in total:
executions, accepted, refused, crashes, hangs, seconds.  A crash or hang input is saved under
WORK/findings/.  Exit status 1 when anything was found.

Why a driver of our own and not libFuzzer/AFL++: the runtime's parsers end through
platform_exit (a longjmp here), keep a little static state, and read files through
bf_read_file; a 300-line driver that serves files from memory, re-checksums module files and
policy tables so the rules behind the CRC are reached, and runs under gcc's sanitizers needs
no extra package and no clang.  It is blind (no coverage feedback); the corpus and the
format-aware mutations make up for part of that.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bareflow.bitcode import compile as bitcode  # noqa: E402
from bareflow.image import bootconfig  # noqa: E402
from bareflow.libc import selection as libc  # noqa: E402
from bareflow.model import synthetic, tokenizer_v2  # noqa: E402
from bareflow.modules import modformat  # noqa: E402
from bareflow.policy import table as policytable  # noqa: E402

from bareflow.tiers import compile as tiers

from bareflow.bitcode import toolchain  # noqa: E402
from bareflow.policy.api import Decision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mtools_image  # noqa: E402

LAYERS = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]
PARSER_TARGETS = ["config", "tokenizer", "model", "policy", "module", "fat16"]
ALL_TARGETS = PARSER_TARGETS + ["image"]
CORPUS = REPO / "tests" / "fuzz-corpus"
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86:allocator_may_return_null=1:"
                    "handle_segv=1:handle_abort=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=86",
}
CFLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
          "-D_GNU_SOURCE", "-std=gnu11", "-w"]


def _tool(name):
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


def missing_tools():
    """Names of the outside programs the campaign needs that are absent (Debian: gcc, dosfstools, mtools)."""
    return [name for name in ("gcc", "mkfs.fat", "mcopy", "mmd") if not _tool(name)]


# ---------------------------------------------------------------- seeds

def build_module_files(work):
    """{"/MODULES/EMBED.O0": module file bytes, ...}: every layer at O0, O1 and O2 for the baseline
    ISA, compiled by the project's pipeline functions outside SCons (bitcode in `work`).  The
    hosted-runtime tests build their images from the same set."""
    exports = set(libc.ProjectLibc(REPO / "src" / "libc", []).symbols())
    files = {}
    for layer in LAYERS:
        bc = work / f"{layer}.bc"
        bitcode.compile_bitcode(REPO / "modules" / f"{layer}.c", bc, cflags=toolchain.FREESTANDING_CFLAGS,
                                include_dirs=[REPO / "src/include", REPO / "src/libc/include",
                                              REPO / "modules/include"], what=f"module {layer}")
        for tier in ("O0", "O1", "O2"):
            obj = tiers.compile_tier(bc.read_bytes(), tier, "x86-64", module_name=layer)
            files[modformat.file_name(layer, tier)] = modformat.pack(obj, layer=layer, tier=tier, isa="x86-64",
                                                                     exports=exports)
    return files


def _policy(ladders):
    decisions = {}
    for layer in LAYERS:
        ladder, calls, preload = ladders.get(layer, (["O0"], [], False))
        decisions[layer] = Decision(ladder=ladder, calls=calls, cycles=[], preload=preload,
                                    stop_profiling=False)
    return policytable.encode(decisions, LAYERS)


def prepare_seeds(work, modules=None):
    """Write WORK/seeds: the base files the parser targets use and one folder of seeds per target.
    `modules` ({"/MODULES/EMBED.O0": bytes, ...}) saves compiling them again."""
    seeds = work / "seeds"
    if (seeds / ".done").exists():
        return seeds
    tmp = Path(tempfile.mkdtemp(prefix="bf-fuzz-build-", dir=work))
    modules = modules or build_module_files(tmp)
    syn = synthetic.write(tmp / "MODEL.BIN", tmp / "TOKENIZR.BIN")
    # The kernel reads TOKENIZR.BIN v2: the llama2.c tokenizer is converted as the build does.
    model = (tmp / "MODEL.BIN").read_bytes()
    tok = tokenizer_v2.encode(tokenizer_v2.load_any(tmp / "TOKENIZR.BIN"))
    cfg = bootconfig.render({"steps": "6", "temperature": "0.8", "seed": "7"}, syn.config.seq_len)
    simple = _policy({})
    ladder = _policy({"embed": (["O0", "O2"], [3], False), "rmsnorm": (["O0", "O1", "O2"], [5, 7], True)})
    profile = bytearray(4096)
    profile[0:6] = b"BFPR\x01\x00"
    files = dict(modules)
    files.update({"/BAREFLOW.CFG": cfg, "/POLICY.TBL": simple, "/MODEL.BIN": model, "/TOKENIZR.BIN": tok,
                  "/PROFILE.BIN": bytes(profile)})
    shutil.rmtree(seeds, ignore_errors=True)
    for target in ALL_TARGETS + ["modules"]:
        (seeds / target).mkdir(parents=True)
    for name, data in (("config.bin", cfg), ("tokenizer.bin", tok), ("model.bin", model), ("policy.bin", simple)):
        (seeds / name).write_bytes(data)
    for name, data in modules.items():
        (seeds / "modules" / name.split("/")[-1]).write_bytes(data)
        (seeds / "module" / name.split("/")[-1]).write_bytes(data)
    (seeds / "config" / "rendered").write_bytes(cfg)
    (seeds / "config" / "crlf").write_bytes(cfg.replace(b"\n", b"\r\n"))
    (seeds / "config" / "all-keys").write_bytes(b"prompt = Hi there\nsteps = 9\ntemperature = 2e-38\n"
                                                b"topp = 1.\nseed = 18446744073709551615\n# end\n")
    (seeds / "tokenizer" / "synthetic").write_bytes(tok)
    (seeds / "model" / "synthetic").write_bytes(model)
    (seeds / "policy" / "simple").write_bytes(simple)
    (seeds / "policy" / "ladder").write_bytes(ladder)
    mtools_image.write_image(seeds / "fat16" / "superfloppy.img", files, part_lba=0, part_kib=4096)
    mtools_image.write_image(seeds / "fat16" / "mbr.img", files, part_lba=1, part_kib=4096)
    (seeds / "image" / "superfloppy.img").write_bytes((seeds / "fat16" / "superfloppy.img").read_bytes())
    for target_dir in CORPUS.glob("*"):           # inputs that once found a bug stay seeds forever
        if target_dir.is_dir() and (seeds / target_dir.name).is_dir():
            for f in target_dir.iterdir():
                shutil.copy(f, seeds / target_dir.name / f"corpus-{f.name}")
    imports = sorted({n for d in modules.values() for n in modformat.parse(d).imports})
    (work / "exports.c").write_text(libc.exports_source(imports))
    shutil.rmtree(tmp, ignore_errors=True)
    (seeds / ".done").write_text("")
    return seeds


# ---------------------------------------------------------------- build

def build(work):
    """Compile the two sanitizer binaries: bf-fuzz (parsers, files served from memory) and
    bf-fuzz-image (the whole runtime on a disk image, the real files.c)."""
    runtime = sorted((REPO / "src/runtime").glob("*.c"))
    # tcb.c is left out: glibc owns this process's thread pointer, errno and __stack_chk_fail
    # (platform_fuzz.c's bf_tcb_* leave them to it).
    common = [str(p) for p in runtime if p.name not in ("files.c", "tcb.c")] + [
        str(REPO / "src/jit/none/backend.c"),         # the JIT=none backend jit.c calls
        str(REPO / "tools/fuzz/platform_fuzz.c"), str(REPO / "tools/fuzz/fuzz_main.c"), str(work / "exports.c")]
    inc = [f"-I{REPO}/src/include", f"-I{REPO}/tools/fuzz"]
    out, jobs = {}, []
    for name, extra in (("bf-fuzz", [str(REPO / "tools/fuzz/files_fuzz.c")]),
                        ("bf-fuzz-image", [str(REPO / "src/runtime/files.c"), "-DFUZZ_IMAGE"])):
        exe = work / name
        sources = common + extra
        newest = max(Path(s).stat().st_mtime for s in sources if s.endswith(".c"))
        if not exe.exists() or exe.stat().st_mtime < newest:      # the two links run side by side
            jobs.append((name, subprocess.Popen(["gcc"] + CFLAGS + inc + sources + ["-o", str(exe), "-lm"],
                                                stderr=subprocess.PIPE)))
        out[name] = exe
    for name, job in jobs:
        _, err = job.communicate()
        if job.returncode:
            raise RuntimeError(f"fuzz_campaign: building {name} failed:\n{err.decode()[-3000:]}")
    return out


# ---------------------------------------------------------------- running

def run_chunk(binaries, seeds, target, execs, rng_seed, timeout=600):
    """One driver process: returns dict(execs, accepted, refused, crashes, hangs, seconds, report)."""
    exe = binaries["bf-fuzz-image" if target == "image" else "bf-fuzz"]
    env = dict(os.environ, **SAN_ENV)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([str(exe), target, str(seeds), str(execs), str(rng_seed)], capture_output=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(execs=0, accepted=0, refused=0, crashes=0, hangs=1, seconds=time.monotonic() - t0,
                    report=f"{target}: the driver itself exceeded {timeout} s")
    line = next((l for l in proc.stdout.decode().splitlines() if l.startswith("FUZZ ")), None)
    if proc.returncode == 0 and line:
        stats = json.loads(line[5:])
        return dict(execs=stats["execs"], accepted=stats["accepted"], refused=stats["refused"], crashes=0, hangs=0,
                    seconds=stats["seconds"], report="")
    hang = proc.returncode == 3
    return dict(execs=0, accepted=0, refused=0, crashes=0 if hang else 1, hangs=1 if hang else 0,
                seconds=time.monotonic() - t0,
                report=f"{target} (rng seed {rng_seed}): exit {proc.returncode}\n" + proc.stderr.decode()[-4000:])


def replay(binaries, seeds, target, files):
    """Run saved inputs once each; returns the driver's CompletedProcess."""
    exe = binaries["bf-fuzz-image" if target == "image" else "bf-fuzz"]
    return subprocess.run([str(exe), target, str(seeds), "--replay"] + [str(f) for f in files],
                          capture_output=True, env=dict(os.environ, **SAN_ENV), timeout=600)


CHUNK = {"config": 20000, "tokenizer": 5000, "model": 20000, "policy": 2000, "module": 20000, "fat16": 500,
         "image": 20}


def campaign(work, targets, seconds, chunk_scale=1.0, out=print):
    seeds = prepare_seeds(work)
    binaries = build(work)
    totals = {t: dict(execs=0, accepted=0, refused=0, crashes=0, hangs=0, seconds=0.0) for t in targets}
    reports = []
    start, rng_seed = time.monotonic(), int(time.time())
    while time.monotonic() - start < seconds:
        for target in targets:
            r = run_chunk(binaries, seeds, target, max(1, int(CHUNK[target] * chunk_scale)), rng_seed)
            rng_seed += 1
            for k in totals[target]:
                totals[target][k] += r[k]
            if r["report"]:
                reports.append(r["report"])
                out(r["report"])
        line = ", ".join(f"{t} {v['execs']}" for t, v in totals.items())
        out(f"[{time.monotonic() - start:7.0f} s] executions: {line}; crashes "
            f"{sum(v['crashes'] for v in totals.values())}, hangs {sum(v['hangs'] for v in totals.values())}")
    return totals, reports


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--work", default=None, help="working folder (default: a new one under /tmp)")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS))
    args = ap.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"fuzz_campaign: missing {', '.join(missing)} (Debian: gcc, dosfstools, mtools)", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bf-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in ALL_TARGETS:
            ap.error(f"unknown target {t!r} (known: {', '.join(ALL_TARGETS)})")
    t0 = time.monotonic()
    totals, reports = campaign(work, targets, args.minutes * 60)
    print(f"\n{'target':10} {'executions':>12} {'accepted':>10} {'refused':>12} {'crashes':>8} {'hangs':>6} "
          f"{'seconds':>8}")
    for t, v in totals.items():
        print(f"{t:10} {v['execs']:12d} {v['accepted']:10d} {v['refused']:12d} {v['crashes']:8d} {v['hangs']:6d} "
              f"{v['seconds']:8.0f}")
    parsers = sum(v["execs"] for t, v in totals.items() if t != "image")
    crashes = sum(v["crashes"] for v in totals.values())
    hangs = sum(v["hangs"] for v in totals.values())
    print(f"total: {parsers} executions over the parsers (+{totals.get('image', {}).get('execs', 0)} whole-image "
          f"runs), {crashes} crashes, {hangs} hangs in {time.monotonic() - t0:.0f} s; work folder {work}")
    return 1 if crashes or hangs else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tier benchmark: BareFlow's tiers x ISA levels and built-in policies against llama2.c's run.c,
side by side in one run.

Prints figures, asserts nothing.  For each model, every configuration runs once per round and
the rounds alternate (run.c -O3, run.c -Ofast -march=native, then every BareFlow image), so a
noisy neighbour slows all columns alike; each figure is the median over the rounds.  Speeds are
forward passes per CPU second of the process in steady state: each round also runs every engine
for a few passes and subtracts that (loading the model, zeroing its pages): 2 for run.c and
llama.cpp, the prompt's token count for BareFlow (the fewest STEPS its build accepts); the
default policy's line compares these steady rates, so its JIT compiles and tier-ups count; prompt positions count
as passes, as run.c counts them; greedy, same prompt and steps for everyone.  CPU time rather than wall time because these machines are shared: the wall clock
would mostly measure how much of a core the scheduler gave each process.

    python tools/bench_tiers.py [--models 15M,42M,260K,Q4_1,Q8_0] [--steps 200] [--runs 3] [--tiers O0,O1,O2,O3]

Models: a random stories15M-shape f32 checkpoint and a 42M GQA shape (tools/gen_random_model.py,
generated here), ../shared/data/stories260K.bin when present, and the real SmolLM2-135M-Instruct
GGUF: Q4_1 as cached by tools/setup.sh, and Q8_0 written from it once by llama.cpp's
`llama-quantize --allow-requantize` (so both sides run the very same Q8_0 file; its values are
the Q4_1 weights requantised).  run.c is built from ../shared/reference/llama2.c/run.c into the
work directory (never copied into the project) and runs the llama2.c checkpoints; llama.cpp
(tools/llamacpp.py, built on first use) runs the GGUF files as `llama-bench -t 1 -p 0 -n STEPS
-r 1`: one thread, and every pass a one-token decode as BareFlow's passes are (llama-simple has
no thread option and decodes the prompt as one batch, which BareFlow does not), timed by CPU
seconds and start-up subtracted exactly like the other columns.
BareFlow runs as build/bareflow-hosted on images built by scons, one per (ISA level, tier) with
POLICY=fixed, plus one multi-level image per built-in policy (the runtime picks the best level);
every image runs on one core (CORES=1), as run.c and llama.cpp -t 1 do.
The "memory" columns put weight bytes read per token x tok/s against a measured copy bandwidth.

Other engines plug in through EXTERNAL_REFERENCES below (llama.cpp does).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RUN_C = SHARED / "reference" / "llama2.c" / "run.c"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import gen_random_model  # noqa: E402
from benchutil import result_of, scons  # noqa: E402
from bareflow.model.checkpoint import read_config  # noqa: E402

PROMPT = "Once upon a time"
GGUF_MODELS = ("Q4_1", "Q8_0")            # SmolLM2-135M-Instruct in these weight types


def llamacpp_columns(name, model, tok, steps, work):
    """llama.cpp single-threaded on the same GGUF file (see the module docstring for why llama-bench)."""
    if name not in GGUF_MODELS:
        return []
    import llamacpp
    try:
        bench = llamacpp.ensure_built()["llama-bench"]
    except llamacpp.LlamaCppError as e:
        print(f"llama.cpp column skipped: {e}")
        return []

    def argv(n):
        return [str(bench), "-m", str(model), "-t", "1", "-p", "0", "-n", str(n), "-r", "1", "-o", "json"]

    def parse(n):
        return lambda stdout, stderr, cpu: (n, cpu) if '"n_gen": %d' % n in stdout else None
    return [("llama.cpp llama-bench -t 1", argv(steps), argv(2), parse(steps), parse(2))]


# Hook for other engines: each entry is a callable (model_name, model_path, tokenizer_path, steps,
# work_dir) -> list of (label, argv, short_argv, parse, short_parse): argv runs the engine for
# `steps` forward passes, short_argv for 2, and parse(stdout, stderr, cpu_seconds) returns
# (passes, CPU seconds) or None.  They then alternate with the other columns like run.c does.
EXTERNAL_REFERENCES = [llamacpp_columns]
# Columns the others are divided by, when measured: (label, short name in the header).
REFERENCE_RATIOS = [("run.c -O3", "run.c O3"), ("run.c -Ofast -march=native", "run.c Ofast"),
                    ("llama.cpp llama-bench -t 1", "llama.cpp")]

LEVEL_FLAGS = {     # /proc/cpuinfo names of each level's features (x86-64 psABI levels)
    "x86-64-v2": {"pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm"},
    "x86-64-v3": {"avx", "avx2", "fma", "bmi1", "bmi2", "movbe", "f16c", "abm", "xsave"},
    "x86-64-v4": {"avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"},
}


def host_levels():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    levels = ["x86-64"]
    for level, need in LEVEL_FLAGS.items():
        if not need <= flags:
            break
        levels.append(level)
    return levels


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def copy_bandwidth(mib=256, repeats=10):
    """Bytes copied per second by numpy (memcpy underneath), best of `repeats`."""
    a = np.ones(mib << 18, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def weight_bytes_per_token(c):
    """f32 weight bytes one forward pass reads (the classifier once; one embedding row)."""
    kv = c.dim * c.n_kv_heads // c.n_heads
    per_block = 2 * c.dim * c.dim + 2 * c.dim * kv + 3 * c.dim * c.hidden_dim + 2 * c.dim
    return 4 * (c.n_layers * per_block + c.vocab_size * c.dim + 2 * c.dim)


def gguf_weight_bytes_per_token(reader, shared_classifier):
    """Bytes of GGUF tensor data one forward pass reads: every tensor once, except that a separate
    token_embd contributes one row (a tied one is read whole as the classifier)."""
    total = sum(int(t.n_bytes) for t in reader.tensors)
    if not shared_classifier:
        embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
        total -= int(embd.n_bytes) - int(embd.n_bytes) // int(embd.shape[-1])
    return total


def build_run_c(work):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not RUN_C.exists():
        print(f"run.c columns skipped: need gcc and {RUN_C}")
        return {}
    out = {}
    for label, flags in (("run.c -O3", ["-O3"]), ("run.c -Ofast -march=native", ["-Ofast", "-march=native"])):
        exe = work / label.replace(" ", "_").replace("=", "")
        subprocess.run([cc, *flags, "-o", str(exe), str(RUN_C), "-lm"], check=True)
        out[label] = exe
    return out


def timed(argv):
    """Run argv; return (stdout, stderr, CPU seconds it used).  CPU time, not wall time: on a
    machine shared with other jobs the wall clock mostly measures the scheduler's share."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{stderr[-2000:]}{stdout[-2000:]}")
    return stdout, stderr, usage.ru_utime + usage.ru_stime


def bareflow_run(hosted, image, work):
    """(forward passes, CPU seconds) of one run, the result JSON and the output."""
    run_img = work / "run.img"
    shutil.copyfile(image, run_img)         # the run writes PROFILE.BIN back into its image
    out, _, cpu = timed([str(hosted), str(run_img)])
    r = result_of(out)
    done = len(r["prompt_tokens"]) - 1 + len(r["tokens"])
    passes = min(r["steps"], done + (1 if done < r["steps"] else 0))     # +1: the pass that sampled BOS
    return (passes, cpu), r, out


def run_c_run(exe, model, tok, steps):
    """(forward passes, CPU seconds); run.c runs `steps` passes unless it samples BOS."""
    out, err, cpu = timed([str(exe), str(model), "-z", str(tok), "-t", "0", "-n", str(steps), "-i", PROMPT])
    if "achieved tok/s" not in err and steps > 2:
        return None
    return steps, cpu


def steady_rate(full, short):
    """Passes per CPU second with the start-up (loading, page zeroing) taken out: the difference
    between a full run and a 2-pass run of the same engine in the same round."""
    if full is None or short is None or full[1] <= short[1] or full[0] <= short[0]:
        return None
    return (full[0] - short[0]) / (full[1] - short[1])


def prepare_model(name, work):
    if name in ("15M", "42M"):
        model, tok = work / f"random{name}.bin", work / f"random{name}_tok.bin"
        gen_random_model.write(name, model, tok)
        return model, tok
    if name == "260K":
        model, tok = SHARED / "data" / "stories260K.bin", SHARED / "data" / "tok512.bin"
        if model.exists() and tok.exists():
            return model, tok
        print(f"stories260K skipped: {model} or {tok} is absent")
        return None
    if name in GGUF_MODELS:
        import fetch_models
        import llamacpp
        q4_1 = fetch_models.smollm2_path()
        if not q4_1.is_file():
            print(f"SmolLM2 {name} skipped: {q4_1} is absent (tools/setup.sh fetches it when online)")
            return None
        if name == "Q4_1":
            return q4_1, None
        try:
            return llamacpp.requantize(q4_1, name), None
        except llamacpp.LlamaCppError as e:
            print(f"SmolLM2 {name} skipped: {e}")
            return None
    raise SystemExit(f"unknown model {name!r} (15M, 42M, 260K, {', '.join(GGUF_MODELS)})")


class ModelInfo:
    """What the table needs to know of a model: its description, passes it allows, weight bytes."""
    def __init__(self, model, tok):
        if tok is None:                                  # a GGUF file
            from bareflow.model.gguf_model import read_gguf
            g = read_gguf(model)
            c = g.config
            self.seq_len, self.wbytes = g.context_length, gguf_weight_bytes_per_token(g.reader, c.shared_classifier)
            self.what = f"{Path(model).name}, "
        else:
            c = read_config(model)
            self.seq_len, self.wbytes = c.seq_len, weight_bytes_per_token(c)
            self.what = ""
        self.what += (f"dim {c.dim}, hidden {c.hidden_dim}, {c.n_layers} blocks, {c.n_heads}/{c.n_kv_heads} heads, "
                      f"vocab {c.vocab_size}")


def bench_model(name, args, levels, run_c, work, copy_bw):
    paths = prepare_model(name, work)
    if paths is None:
        return
    model, tok = paths
    info = ModelInfo(model, tok)
    steps = min(args.steps, info.seq_len)
    files = [f"MODEL={model}"] + ([f"TOKENIZER={tok}"] if tok else [])
    # CORES=1: a single-core comparison (run.c and llama.cpp -t 1 use one thread; a second
    # BareFlow core would also add its barrier spinning to the CPU seconds).
    common = [*files, f"STEPS={steps}", f"PROMPT={PROMPT}", "CORES=1"]
    build = work / f"build-{name}"
    images = {}                                          # label -> image copy
    print(f"[{name}] building images ...", flush=True)
    for isa in levels:
        for tier in args.tiers:
            scons(build, "image", "hosted", f"ISA={isa}", "POLICY=fixed", f"TIER={tier}", *common)
            images[f"BareFlow {tier} {isa}"] = shutil.copyfile(build / "bareflow.img", work / f"{name}-{isa}-{tier}.img")
    all_levels = ",".join(levels)
    scons(build, "image", "hosted", f"ISA={all_levels}", "POLICY=tiered", *common)
    images["BareFlow policy tiered"] = shutil.copyfile(build / "bareflow.img", work / f"{name}-tiered.img")
    hosted = shutil.copyfile(build / "bareflow-hosted", work / f"{name}-hosted")
    os.chmod(hosted, 0o755)
    _, first, log = bareflow_run(hosted, images["BareFlow policy tiered"], work)
    (work / f"{name}-tiered.log").write_text(log)
    scons(build, "image", "hosted", f"ISA={all_levels}", "POLICY=pgo", f"PROFILE={work / f'{name}-tiered.log'}",
          *common)
    images["BareFlow policy pgo"] = shutil.copyfile(build / "bareflow.img", work / f"{name}-pgo.img")

    # The start-up run: as few positions as the build accepts (STEPS may not be below the
    # prompt's token count, bareflow/model/prompt.py), 2 when the prompt is shorter.
    short_steps = max(2, len(first["prompt_tokens"]))
    scons(build, "image", "hosted", f"ISA={levels[0]}", "POLICY=fixed", "TIER=O2", *files, f"STEPS={short_steps}",
          f"PROMPT={PROMPT}", "CORES=1")
    startup_image = shutil.copyfile(build / "bareflow.img", work / f"{name}-startup.img")

    # (label, full run, start-up run): each returns (passes, cpu seconds) or None
    columns = [(label, lambda exe=exe: run_c_run(exe, model, tok, steps), lambda exe=exe: run_c_run(exe, model, tok, 2))
               for label, exe in run_c.items() if tok is not None]
    for hook in EXTERNAL_REFERENCES:
        for label, argv, short_argv, parse, short_parse in hook(name, model, tok, steps, work) or []:
            def external(argv, parse):
                return parse(*timed(argv))
            columns.append((label, lambda a=argv, p=parse: external(a, p),
                            lambda a=short_argv, p=short_parse: external(a, p)))
    isa_seen = {}
    bf_short = lambda: bareflow_run(hosted, startup_image, work)[0]
    for label, image in images.items():
        def bf(image=image, label=label):
            run, r, _ = bareflow_run(hosted, image, work)
            isa_seen[label] = r["isa"]
            return run
        columns.append((label, bf, bf_short))

    rates = {label: [] for label, _, _ in columns}
    for round_ in range(args.runs):
        print(f"[{name}] round {round_ + 1}/{args.runs} ...", flush=True)
        shorts = {}
        for label, full, short in columns:
            key = short if not label.startswith("BareFlow") else "bareflow"
            if key not in shorts:
                shorts[key] = short()
            rate = steady_rate(full(), shorts[key])
            if rate is not None:
                rates[label].append(rate)
    med = {label: statistics.median(v) for label, v in rates.items() if v}

    wbytes = info.wbytes
    print(f"\n{name}: {info.what}; {steps} steps, greedy, median of {args.runs} alternating rounds; "
          f"{wbytes / 1e6:.1f} MB of weights per token")
    o3 = med.get("run.c -O3")
    fast = med.get("run.c -Ofast -march=native")
    refs = [(short, med[label]) for label, short in REFERENCE_RATIOS if label in med]    # ratio columns
    print(f"  {'configuration (per CPU second)':<34} {'tok/s':>9} " + "".join(f"{'/' + r:>13}" for r, _ in refs) +
          f" {'weights GB/s':>13} {'/copy bw':>9}")
    for label, _, _ in columns:
        if label not in med:
            print(f"  {label:<34} {'(no figure)':>9}")
            continue
        rate = med[label]
        shown = label + (f" -> {isa_seen[label]}" if "policy" in label and label in isa_seen else "")
        print(f"  {shown:<34} {rate:9.1f} " + "".join(f"{rate / v:12.2f}x" for _, v in refs) +
              f" {wbytes * rate / 1e9:13.2f} {wbytes * rate / copy_bw:8.2f}x")
    lcpp = med.get("llama.cpp llama-bench -t 1")
    if lcpp:
        best_label = max((k for k in med if k.startswith("BareFlow")), key=med.get, default=None)
        if best_label:
            print(f"  best BareFlow: {best_label} {med[best_label]:.1f} tok/s = {med[best_label] / lcpp:.2f}x "
                  f"llama.cpp single-thread {lcpp:.1f} tok/s (target >= 1.0)")
    fixed = {k: v for k, v in med.items() if k.startswith("BareFlow O")}
    if fixed:
        best_label = max(fixed, key=fixed.get)
        best = fixed[best_label]
        tiered = med.get("BareFlow policy tiered")
        if tiered:
            print(f"  default policy (tiered) over {steps} steps, tier-ups included: {best / tiered:.2f}x the time "
                  f"of the best fixed tier {best_label} (target <= 1.1 over 256)")
        if o3 and fast:
            print(f"  best fixed tier: {best_label} {best:.1f} tok/s = {best / fast:.2f}x "
                  f"run.c -Ofast -march=native (target >= 1.0), {best / o3:.2f}x run.c -O3 (target >= 4)")
        base = med.get("BareFlow O3 x86-64")
        top = max((v for k, v in fixed.items() if k.startswith("BareFlow O3 ")), default=None)
        if base and top:
            top_label = max((k for k in fixed if k.startswith("BareFlow O3 ")), key=fixed.get)
            print(f"  best ISA level at O3: {top_label} = {top / base:.2f}x BareFlow O3 x86-64 (target >= 2)")
    print(flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="15M,42M,260K,Q4_1,Q8_0")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiers", default="O0,O1,O2,O3")
    ap.add_argument("--isa", default="", help="ISA levels to measure (default: every level this CPU runs)")
    ap.add_argument("--work", default="", help="keep images and binaries here (default: a temporary directory)")
    args = ap.parse_args()
    args.tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    levels = [s.strip() for s in args.isa.split(",") if s.strip()] or host_levels()
    with tempfile.TemporaryDirectory(prefix="bareflow-tiers-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        copy_bw = copy_bandwidth()
        print(f"CPU: {cpu_model()}; ISA levels measured: {', '.join(levels)}; "
              f"memory copy {copy_bw / 1e9:.2f} GB/s copied (read + write traffic twice that)")
        run_c = build_run_c(work)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            bench_model(name, args, levels, run_c, work, copy_bw)


if __name__ == "__main__":
    main()

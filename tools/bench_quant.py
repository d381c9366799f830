#!/usr/bin/env python3
"""Micro-benchmark of modules/include/quant.h: ns per 32-weight block of matmul_typed_rows on one
GGUF matrix, per weight type, tier and ISA level, optionally beside the quant.h of another git
revision (alternating, in one run).

Prints figures, asserts nothing (except that both headers give the same bits: quant.h promises
one summation order, so a revision that changed a result is reported, not timed).

    python tools/bench_quant.py [--types Q4_1,Q4_0,Q8_0] [--isa x86-64,x86-64-v3] [--tiers O1,O3]
                                [--rows 1536 --cols 576] [--rounds 5] [--base REV] [--asm DIR]

The matrix (default 1536x576, SmolLM2's ffn_gate shape: 553 KB in Q4_1) stays in the caches,
so this measures the arithmetic, not DRAM; tools/bench_tiers.py measures whole models.  Each
configuration is compiled like a tier: a C wrapper around matmul_typed_rows becomes bitcode with
the build's flags (-O2 -Xclang -disable-llvm-passes), its target attributes are rewritten to the
ISA level, the tier's pass pipeline runs in llvmlite, and MCJIT loads it (as
tests/test_modules_tiers.py does).  Times are CPU seconds of this process (the machines are
shared): per configuration the minimum and median over the rounds.  `--asm DIR` writes each
configuration's assembly, for llvm-mca (docs/layer-math.md shows how).
"""
import argparse
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bareflow.bitcode.toolchain import BITCODE_CFLAGS, CC, FREESTANDING_CFLAGS  # noqa: E402

TYPE_CODES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 8}     # ggml_type (bareflow/weight_types.h)
WRAPPER = """#include "quant.h"
void bench_mm(float *out, const float *x, const void *w, int type, int rows, int cols, int reps)
{
    for (int r = 0; r < reps; r++)
        matmul_typed_rows(out, x, w, type, cols, 0, rows);
}
"""


def compile_bitcode(include_first, work, tag):
    """Bitcode of the wrapper with `include_first` searched before the project's headers."""
    src, bc = work / "bench_mm.c", work / f"bench_mm-{tag}.bc"
    src.write_text(WRAPPER)
    incs = [f"-I{include_first}", f"-I{ROOT / 'src' / 'include'}", f"-I{ROOT / 'src' / 'libc' / 'include'}",
            f"-I{ROOT / 'modules' / 'include'}"]
    subprocess.run([*CC, *FREESTANDING_CFLAGS, *incs, *BITCODE_CFLAGS, "-c", str(src), "-o", str(bc)], check=True)
    return bc.read_bytes()


class Jit:
    """Tier pipelines and MCJIT engines; keeps every engine (and its pass builder) alive."""

    def __init__(self):
        import llvmlite.binding as llvm
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.llvm, self.keep = llvm, []

    def function(self, bitcode, isa, level, asm_path=None):
        llvm = self.llvm
        ir = str(llvm.parse_bitcode(bitcode))
        ir = re.sub(r'"target-cpu"="[^"]*"', f'"target-cpu"="{isa}"', ir)
        ir = re.sub(r'"target-features"="[^"]*"', '"target-features"="+sse,+sse2"', ir)
        ir = re.sub(r'"tune-cpu"="[^"]*"', '"tune-cpu"="generic"', ir)
        mod = llvm.parse_assembly(ir)
        mod.triple = llvm.get_process_triple()
        tm = llvm.Target.from_triple(mod.triple).create_target_machine(
            cpu=isa, features="+sse,+sse2", opt=level, reloc="pic", codemodel="jitdefault")
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(speed_level=level)
        pto.loop_vectorization = pto.slp_vectorization = pto.loop_unrolling = level >= 2   # as bareflow/tiers
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        if asm_path:
            Path(asm_path).write_text(tm.emit_assembly(mod))
        ee = llvm.create_mcjit_compiler(mod, tm)
        ee.finalize_object()
        self.keep.append((ee, mod, tm, pb, pto))
        c_int, c_void_p = ctypes.c_int, ctypes.c_void_p
        proto = ctypes.CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_int, c_int, c_int, c_int)
        return proto(ee.get_function_address("bench_mm"))


def quantised(rows, cols, name, seed=1):
    import gguf
    w = (np.random.default_rng(seed).standard_normal((rows, cols)) * 0.3).astype(np.float32)
    return np.ascontiguousarray(gguf.quants.quantize(w, gguf.GGMLQuantizationType[name]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_1,Q4_0,Q8_0")
    ap.add_argument("--isa", default="x86-64,x86-64-v3")
    ap.add_argument("--tiers", default="O1,O3")
    ap.add_argument("--rows", type=int, default=1536)
    ap.add_argument("--cols", type=int, default=576)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=100, help="matmuls per timed call")
    ap.add_argument("--base", default="", help="git revision whose quant.h runs beside the working tree's")
    ap.add_argument("--asm", default="", help="write each configuration's assembly into this directory")
    args = ap.parse_args()
    if args.cols % 32:
        raise SystemExit(f"--cols {args.cols}: must be a multiple of 32 (one block)")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    for t in types:
        if t not in TYPE_CODES:
            raise SystemExit(f"--types: unknown type {t!r} (one of {', '.join(TYPE_CODES)})")
    jit = Jit()
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(tmp)
        headers = {"current": ROOT / "modules" / "include"}
        if args.base:
            base_dir = work / "base"
            base_dir.mkdir()
            try:
                text = subprocess.run(["git", "show", f"{args.base}:modules/include/quant.h"], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout
            except subprocess.CalledProcessError as e:
                raise SystemExit(f"--base {args.base}: git cannot show its modules/include/quant.h: {e.stderr.strip()}")
            (base_dir / "quant.h").write_text(text)
            headers = {f"base {args.base}": base_dir, **headers}
        bitcode = {label: compile_bitcode(d, work, str(i)) for i, (label, d) in enumerate(headers.items())}
        x = np.random.default_rng(2).standard_normal(args.cols).astype(np.float32)
        blocks = args.rows * args.cols // 32
        print(f"{args.rows}x{args.cols} matrix, {blocks} blocks, {args.reps} matmuls per call, "
              f"{args.rounds} alternating rounds; load average {os.getloadavg()[0]:.2f}")
        for isa in [s.strip() for s in args.isa.split(",") if s.strip()]:
            for tier in [s.strip() for s in args.tiers.split(",") if s.strip()]:
                level = int(tier.lstrip("O"))
                fns = {}
                for label, bc in bitcode.items():
                    asm = Path(args.asm) / f"{label.split()[0]}-{isa}-{tier}.s" if args.asm else None
                    fns[label] = jit.function(bc, isa, level, asm)
                for t in types:
                    w = quantised(args.rows, args.cols, t)
                    outs = {}
                    for label, f in fns.items():
                        outs[label] = np.zeros(args.rows, np.float32)
                        f(outs[label].ctypes.data, x.ctypes.data, w.ctypes.data, TYPE_CODES[t], args.rows, args.cols, 1)
                    first = next(iter(outs.values()))
                    same = all(np.array_equal(o.view(np.uint32), first.view(np.uint32)) for o in outs.values())
                    times = {label: [] for label in fns}
                    for _ in range(args.rounds):
                        for label, f in fns.items():
                            out = outs[label]
                            t0 = time.process_time()
                            f(out.ctypes.data, x.ctypes.data, w.ctypes.data, TYPE_CODES[t], args.rows, args.cols,
                              args.reps)
                            times[label].append((time.process_time() - t0) / args.reps / blocks * 1e9)
                    base_med = statistics.median(next(iter(times.values())))
                    for label, v in times.items():
                        med = statistics.median(v)
                        ratio = f"  {base_med / med:.2f}x the first" if len(times) > 1 else ""
                        print(f"  {t} {isa} {tier} {label:<16} min {min(v):6.2f}  median {med:6.2f} ns/block{ratio}")
                    if not same:
                        print(f"  {t} {isa} {tier}: the headers give DIFFERENT bits")
        print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

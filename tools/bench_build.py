#!/usr/bin/env python3
"""Build benchmark: cold build, no-op rebuild and one-module rebuild of `scons image`.

Prints figures; asserts nothing (timings on shared machines are noisy: compare the ratios of one
run).  Works on a temporary copy of the repository so the module edit never touches the tree.

    python tools/bench_build.py [--jobs 2] [--repeat 3] [--module rope]
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


def copy_repo(dest):
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def timed_scons(repo, jobs, *extra):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "SCons", "-Q", f"-j{jobs}", "image", *extra], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--module", default="rope", help="module whose source is edited")
    args = parser.parse_args()
    cold, noop, one = [], [], []
    with tempfile.TemporaryDirectory(prefix="bareflow-bench-") as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        source = repo / "modules" / f"{args.module}.c"
        for i in range(args.repeat):
            shutil.rmtree(repo / "build", ignore_errors=True)
            cold.append(timed_scons(repo, args.jobs))
            noop.append(timed_scons(repo, args.jobs))
            source.write_text(source.read_text() + f"\nint bareflow_bench_edit_{i} = {i};\n")
            one.append(timed_scons(repo, args.jobs))
    print(f"scons image, -j{args.jobs}, {args.repeat} runs each (median, min..max seconds)")
    for label, values in (("cold build", cold), ("no-op rebuild", noop), (f"one-module rebuild ({args.module})", one)):
        print(f"  {label:<32} {statistics.median(values):7.2f}   ({min(values):.2f}..{max(values):.2f})")
    print(f"  no-op / cold = {statistics.median(noop) / statistics.median(cold):.2f}, "
          f"one-module / cold = {statistics.median(one) / statistics.median(cold):.2f}")


if __name__ == "__main__":
    main()

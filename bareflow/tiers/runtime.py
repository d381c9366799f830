"""Run-time tiers: ladder rungs compiled by the booted program's JIT instead of the build.

A ladder rung is either an ahead-of-time tier ("O0".."O3", a module file on the image) or a
run-time tier "O<n>@<target>": the layer's bitcode compiled at O<n> when the layer reaches that
rung, for `host` (the CPU the run is on, as LLVMGetHostCPUName/Features see it) or for a named
ISA level (x86-64-v3, x86-64-v4).  Run-time tiers need an image built with JIT=llvm
(docs/jit.md).  In the policy table (docs/policy-table.md, version 2) a rung is one byte:
0..3 for O0..O3, kind << 4 | level for a run-time tier (kind 1 host, 2 x86-64-v3, 3 x86-64-v4).
"""
from __future__ import annotations

from bareflow.tiers.levels import TIERS as AOT_TIERS
KINDS = {"host": 1, "x86-64-v3": 2, "x86-64-v4": 3}
RUN_TIME_TIERS = tuple(f"{t}@{k}" for k in KINDS for t in AOT_TIERS)
ALL_TIERS = AOT_TIERS + RUN_TIME_TIERS


def tier_code(name) -> int | None:
    """The policy-table byte for a tier name, or None when it names no tier."""
    if name in AOT_TIERS:
        return AOT_TIERS.index(name)
    if isinstance(name, str) and name in RUN_TIME_TIERS:
        level, kind = name.split("@")
        return KINDS[kind] << 4 | AOT_TIERS.index(level)
    return None


def tier_name(code: int) -> str | None:
    """The tier name of a policy-table byte, or None when the byte is no tier code."""
    for name in ALL_TIERS:
        if tier_code(name) == code:
            return name
    return None


def is_run_time(name: str) -> bool:
    return name in RUN_TIME_TIERS


def level(name: str) -> str:
    """"O2@host" -> "O2"; "O2" -> "O2"."""
    return name.split("@")[0]


def run_time(level_name: str, target: str = "host") -> str:
    """The run-time tier compiling at `level_name` for `target`: run_time("O3") == "O3@host"."""
    name = f"{level_name}@{target}"
    if name not in RUN_TIME_TIERS:
        raise ValueError(f"no run-time tier {name!r}; known: {', '.join(RUN_TIME_TIERS)}")
    return name

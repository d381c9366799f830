"""The run-time rung the built-in "tiered" policy adds when the image has a JIT (JIT=llvm).

Rule (docs/policies.md): after the ahead-of-time ladder, every layer gets one more rung,
O3@host — its bitcode compiled at O3 for the CPU the run is on — triggered by cycles only: the
layer moves up once it has spent JIT_COMPILE_CYCLES at its last ahead-of-time tier, the cost
of one compile.  This is the ski-rental break-even rule: a layer that never spends what a
compile costs is never compiled, and one that does has spent at most twice what it would have
with perfect foresight of the run.  The default, 1e8 cycles (about 35 ms at 3 GHz), is the
measured time of one optimising compile of the largest layer natively
(../shared/notes/RUNTIME-JIT-FACTS.md: ffn O3 34 ms); under QEMU's TCG a compile takes about
a second, which the same rule then simply pays for later.
"""
from __future__ import annotations

from typing import Mapping

from bareflow.core.variables import parse_int
from bareflow.policy.api import Decision, LayerInfo

DEFAULT_COMPILE_CYCLES = 100_000_000
COMPILE_CYCLES_RANGE = (1, 10**15)         # 10^15: the policy table's limit on a cycle trigger
RUN_TIME_TIER = "O3@host"
MAX_TIERS = 4


def compile_cycles(variables: Mapping[str, str]) -> int:
    """JIT_COMPILE_CYCLES as an int (1..10^15); BareflowError naming the variable otherwise."""
    return parse_int(variables.get("JIT_COMPILE_CYCLES", DEFAULT_COMPILE_CYCLES), "JIT_COMPILE_CYCLES",
                     *COMPILE_CYCLES_RANGE, "cycles one run-time compile costs")


def add_run_time_tier(decision: Decision, layer: LayerInfo, variables: Mapping[str, str]) -> None:
    """Append O3@host with a cycle trigger of one compile's cost (in place)."""
    if len(decision.ladder) >= MAX_TIERS:
        return
    steps = len(decision.ladder) - 1
    decision.ladder.append(RUN_TIME_TIER)
    decision.calls = list(decision.calls) + [0]
    decision.cycles = (list(decision.cycles) or [0] * steps) + [compile_cycles(variables)]

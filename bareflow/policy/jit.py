"""The run-time rung the built-in "tiered" policy adds when the image has a JIT (JIT=llvm).

Rule (docs/policies.md "Run-time rung"): after the ahead-of-time ladder, every layer gets one more
rung, O3@host — its bitcode compiled at O3 for the CPU the run is on — triggered by cycles only:
the layer moves up once it has spent, at its last ahead-of-time tier, what one compile costs the
generating core (core 0).  This is the ski-rental break-even rule: a layer that never spends what
a compile costs is never compiled, and one that does has spent at most twice what it would have
with perfect foresight of the run.

What a compile costs core 0 depends on where it runs (docs/jit.md "Where compiles run"):
* inline, with one core (CORES=1): core 0 stops for the whole compile, C cycles
  (JIT_COMPILE_CYCLES);
* on core 1, with n >= 2 cores (CORES=n): core 0 goes on generating; what it loses is core 1's
  share of the split layers while core 1 compiles.  With a token's work split S : unsplit U
  (f = S/(S+U), LayerInfo.split_share), core 0 takes U + S/n cycles a token, and U + S/(n − 1)
  while core 1 is out of the split; over the C cycles the compile lasts it falls behind by
  C·(S/(n − 1) − S/n) / (U + S/(n − 1)) = C·f / (n·(n − 1 − (n − 2)·f)) —
  C·f/2 with two cores, C/n when everything is split, at most C·f/n.  f counts every split
  layer, even one a cap (Decision.max_cores) keeps off core 1, so this is an upper bound.
* CORES=all (LayerInfo.cores = 0): the build cannot know whether a second core will start, so the
  inline cost is kept.  It is the safe guess both ways: with one core it is the break-even rule;
  with more, each layer waits at most C cycles longer than it needed to.
The default C, 1e8 cycles (about 35 ms at 3 GHz), is the measured time of one optimising compile
of the largest layer natively (../shared/notes/RUNTIME-JIT-FACTS.md: ffn O3 34 ms); under QEMU's
TCG a compile takes about a second, which the same rule then simply pays for later.
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


def compile_cost(layer: LayerInfo, variables: Mapping[str, str]) -> tuple[int, str]:
    """(cycles, why): what one run-time compile costs core 0 for a run like `layer`'s.

    cycles is JIT_COMPILE_CYCLES (C) when the compile runs inline (layer.cores == 1) or the core
    count is unknown (layer.cores == 0); with n = layer.cores >= 2 it is the split share core 0
    loses while core 1 compiles, round(C·f / (n·(n − 1 − (n − 2)·f))) with f = layer.split_share,
    at least 1.
    Raises BareflowError for a bad JIT_COMPILE_CYCLES.
    """
    full = compile_cycles(variables)
    n = layer.cores
    if n == 1:
        return full, f"inline on core 0 (CORES=1): {full} cycles"
    if n == 0:
        return full, f"CORES=all: a spare core is not certain, inline cost {full} cycles"
    f = min(1.0, max(0.0, layer.split_share))
    lost = max(1, round(full * f / (n * (n - 1 - (n - 2) * f))))
    return lost, f"on core 1 of {n}: {full} cycles, split share {f:.3f}: core 0 loses {lost}"


def add_run_time_tier(decision: Decision, layer: LayerInfo, variables: Mapping[str, str]) -> None:
    """Append O3@host with a cycle trigger of one compile's cost to core 0 (in place)."""
    if len(decision.ladder) >= MAX_TIERS:
        return
    steps = len(decision.ladder) - 1
    decision.ladder.append(RUN_TIME_TIER)
    decision.calls = list(decision.calls) + [0]
    decision.cycles = (list(decision.cycles) or [0] * steps) + [compile_cost(layer, variables)[0]]

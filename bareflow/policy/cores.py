"""How many cores the built-in policies let a split layer use (Decision.max_cores).

Rule (docs/policies.md "Cores"): splitting a call over n cores saves at best the work's share
of the other cores, W·c·(1 − 1/n) cycles, where W is the layer's work per call in the cost
model's units (LayerInfo.work_per_call: FLOPs + weight bytes) and c the cycles one unit takes at
the layer's top tier; it costs a split point per phase — core 0 posts a mailbox to each other
core, each claims its chunk and arrives at the barrier — which grows with each extra core.
With B cycles of split cost per extra core, the n-th core pays for itself while the work it
takes off the others, W·c·(1/(n−1) − 1/n) = W·c / (n(n−1)), is at least B.  So a layer gets
the largest n with n(n−1) ≤ W·c/B: 1 (not split) when W·c < 2B, no cap when n reaches the
core count the build knows (CORES) or 64.

Constants and their source (tools/bench_smp.py prints both measurements on the machine it runs
on; the figures below are from this project's 2-core AMD EPYC VM, hosted build, x86-64 O3):
* CYCLES_PER_WORK, per layer kind, at the layer's top tier: matmul 0.07 — the synthetic
  model's qkv, attnout, ffn and classify at O3 took 0.063–0.09 cycles per unit (e.g. qkv 36864
  units in 2536–2726 cycles per call); attention 1.4 — attn at O2 took 53600–87800 cycles per
  call for ~42400 units at a mean context of 100 positions (the cost model counts an exp as one
  FLOP; the softmax's exps dominate);
* SPLIT_CYCLES = 1500 (build variable SPLIT_CYCLES): cycles one split point costs per extra
  core, measured as (cycles per call on 2 cores) − (cycles per call on 1 core)/2 for the
  synthetic model's qkv and attnout, whose work is too small to matter: 1200–2100 cycles per
  call under a load average of 5–8 (a quiet host hands cache lines over faster; a lower value
  splits more layers).  SPLIT_CYCLES=0 turns the cap off.
The cap does not change any result: every chunking gives bit-identical output
(docs/runtime.md), so it is a speed decision only.
"""
from __future__ import annotations

from typing import Mapping

from bareflow.core.variables import parse_int
from bareflow.policy.api import MAX_CORES, LayerInfo

CYCLES_PER_WORK = {"matmul": 0.07, "attention": 1.4}
DEFAULT_SPLIT_CYCLES = 1500
SPLIT_CYCLES_RANGE = (0, 10**9)


def split_cycles(variables: Mapping[str, str]) -> int:
    """SPLIT_CYCLES as an int (0..10^9); BareflowError naming the variable otherwise."""
    return parse_int(variables.get("SPLIT_CYCLES", DEFAULT_SPLIT_CYCLES), "SPLIT_CYCLES", *SPLIT_CYCLES_RANGE,
                     "cycles one split point costs per extra core; 0 = never cap")


def max_cores(layer: LayerInfo, variables: Mapping[str, str]) -> tuple[int, str]:
    """(Decision.max_cores, why) for `layer`: 0 = no cap, else the cores its calls may use."""
    if not layer.split:
        return 0, "not split"
    if layer.cores == 1:
        return 0, "CORES=1: nothing is split"
    cost = split_cycles(variables)
    if cost == 0:
        return 0, "SPLIT_CYCLES=0"
    cycles = layer.work_per_call * CYCLES_PER_WORK.get(layer.kind, CYCLES_PER_WORK["matmul"])
    ratio = cycles / cost
    limit = layer.cores or MAX_CORES
    n = 1
    while n < limit and (n + 1) * n <= ratio:
        n += 1
    why = f"~{cycles:.0f} cycles of work per call vs {cost} per split core"
    return (0 if n >= limit else n), why

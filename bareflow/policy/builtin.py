"""Built-in tiering policies: "tiered" (the default), "fixed" and "pgo".

They are an ordinary plugin on bareflow_register_policies; BLOCK_PLUGINS=
bareflow.policy.builtin removes all three.  docs/policies.md explains the rules.

Why "tiered" looks the way it does
----------------------------------
Managed runtimes promote code by invocation counts that decades of tuning settled on:
HotSpot moves a method from the interpreter to C1 after 200 calls (Tier3InvocationThreshold)
and to C2 after 5000 (Tier4InvocationThreshold); .NET's tiered compilation promotes tier 0 to
fully optimised code after 30 calls (TC_CallCountThreshold).  Those counts were tuned for
ordinary methods that do on the order of REFERENCE_WORK (2000) operations per call.  Our layers
are not ordinary methods: a matmul layer does tens of thousands to hundreds of millions of
FLOPs per call, so a call of it is "worth" many calls of a typical method.  The rule therefore

* measures a layer's work per call as FLOPs + weight bytes streamed (LayerInfo.work_per_call),
* treats a layer as heavy when it is at least HEAVY_SHARE (3%) of a token's work, counting how
  often it is called per token (LayerInfo.token_share),
* cheap layers (rmsnorm, rope, embed, sampler, usually attn at short context) take the .NET
  route: one step O0 -> O2 after 30 calls, loaded on demand;
* heavy layers (qkv, attnout, ffn, classify) take the HotSpot route O0 -> O2 -> O3 with the 200
  and 5000 thresholds divided by work_per_call / REFERENCE_WORK, plus a cycle budget equal to
  the cycles the reference method would spend reaching the same threshold (about one cycle per
  unit of work), whichever comes first; their tiers are preloaded at boot because promotion
  comes within a few calls and file loading should stay out of the token loop;
* unlike a JIT we know the run length, so no step waits longer than a quarter of the layer's
  expected calls (calls_per_token * tokens), and no tier is left after fewer than 2 calls.
O1 is skipped, as both runtimes skip their intermediate tier for hot code.

"tiered" and "pgo" also cap the cores a split layer uses where its work per call is too small
to pay for the split points (bareflow/policy/cores.py: Decision.max_cores).  With JIT=llvm,
"tiered" adds a run-time rung whose cycle trigger is what a compile costs core 0, less when a
spare core compiles (bareflow/policy/jit.py).
"""
from __future__ import annotations

import math
import os
from typing import Mapping

from bareflow import BareflowError, hookimpl
from bareflow.core.variables import Variable, flag, parse_int
from bareflow.policy.api import MAX_CALLS, Decision, LayerInfo, Policy
from bareflow.policy.cores import DEFAULT_SPLIT_CYCLES, SPLIT_CYCLES_RANGE, max_cores, split_cycles
from bareflow.policy.jit import COMPILE_CYCLES_RANGE, DEFAULT_COMPILE_CYCLES
from bareflow.tiers import runtime as runtiers
from bareflow.tiers.levels import TIERS

HOTSPOT_C1_CALLS = 200
HOTSPOT_C2_CALLS = 5000
DOTNET_TIER1_CALLS = 30
REFERENCE_WORK = 2000
CYCLES_PER_WORK = 1
HEAVY_SHARE = 0.03
RUN_FRACTION = 4
MIN_CALLS = 2
DEFAULT_FIXED_TIER = "O2"

SPLIT_CYCLES_HELP = (f"cycles one split point costs per extra core (default {DEFAULT_SPLIT_CYCLES}, measured "
                     "hosted on a 2-core EPYC VM): a split layer gets the most cores n with "
                     "n(n-1) <= its work per call in cycles / this; 0 = never cap (bareflow/policy/cores.py)")

STOP_PROFILING_HELP = ("1 = stop counting cycles once a layer reaches its last tier "
                       "(default 0: keep profiling so the run's PROFILE.BIN is complete)")

def _flag(variables: Mapping[str, str], key: str) -> bool:
    return flag(variables, key, "no")


def _tier(variables: Mapping[str, str]) -> str:
    tier = str(variables.get("TIER", DEFAULT_FIXED_TIER)).strip() or DEFAULT_FIXED_TIER
    if tier not in TIERS and not runtiers.is_run_time(tier):
        raise BareflowError(f"TIER={tier!r}: expected one of {', '.join(TIERS)}, or with JIT=llvm a "
                            f"run-time tier ({', '.join(runtiers.RUN_TIME_TIERS[:4])}, ...)")
    return tier


def _hot_calls(variables: Mapping[str, str]) -> int:
    """PGO_HOT_CALLS as an int (1..MAX_CALLS, the policy table's call limit)."""
    return parse_int(variables.get("PGO_HOT_CALLS", DOTNET_TIER1_CALLS), "PGO_HOT_CALLS", 1, MAX_CALLS,
                     "calls that make a profiled layer hot")


# --- tiered ------------------------------------------------------------------------------

def _scaled_calls(jit_calls: int, layer: LayerInfo) -> int:
    """A JIT call threshold scaled to this layer's work per call and capped by the run."""
    scale = min(1.0, REFERENCE_WORK / max(1, layer.work_per_call))
    calls = round(jit_calls * scale)
    run_cap = math.ceil(layer.expected_calls / RUN_FRACTION)
    return max(MIN_CALLS, min(calls, run_cap))


def tiered_decision(layer: LayerInfo, variables: Mapping[str, str]) -> Decision:
    decision = _tiered_aot(layer, variables)
    if layer.jit != "none":
        from bareflow.policy.jit import add_run_time_tier
        add_run_time_tier(decision, layer, variables)
    decision.max_cores = max_cores(layer, variables)[0]
    return decision


def _tiered_aot(layer: LayerInfo, variables: Mapping[str, str]) -> Decision:
    stop = _flag(variables, "STOP_PROFILING")
    if layer.token_share >= HEAVY_SHARE:
        return Decision(
            ladder=["O0", "O2", "O3"],
            calls=[_scaled_calls(HOTSPOT_C1_CALLS, layer), _scaled_calls(HOTSPOT_C2_CALLS, layer)],
            cycles=[HOTSPOT_C1_CALLS * REFERENCE_WORK * CYCLES_PER_WORK,
                    HOTSPOT_C2_CALLS * REFERENCE_WORK * CYCLES_PER_WORK],
            preload=True, stop_profiling=stop)
    run_cap = math.ceil(layer.expected_calls / RUN_FRACTION)
    calls = max(MIN_CALLS, min(DOTNET_TIER1_CALLS, run_cap))
    return Decision(ladder=["O0", "O2"], calls=[calls], cycles=[], preload=False,
                    stop_profiling=stop)


# --- fixed -------------------------------------------------------------------------------

def fixed_decision(layer: LayerInfo, variables: Mapping[str, str]) -> Decision:
    tier = _tier(variables)
    if "@" in tier:     # a run-time tier: its one compile comes after the first call, made at O0
        return Decision(ladder=["O0", tier], calls=[1], cycles=[], preload=False,
                        stop_profiling=_flag(variables, "STOP_PROFILING"))
    return Decision(ladder=[tier], calls=[], cycles=[], preload=False,
                    stop_profiling=_flag(variables, "STOP_PROFILING"))


# --- pgo ---------------------------------------------------------------------------------

_profile_cache: dict[tuple, object] = {}


def _profile_for(layer: LayerInfo, variables: Mapping[str, str]):
    """The layer's LayerProfile: from LayerInfo, else loaded from PROFILE (cached per file)."""
    if layer.profile is not None:
        return layer.profile
    path = str(variables.get("PROFILE", "")).strip()
    if not path:
        raise BareflowError("policy 'pgo' needs a runtime profile: set PROFILE=path "
                            "(a PROFILE.BIN from `scons profile` or a log with a BAREFLOW-RESULT line)")
    from bareflow.policy.profile import load_profile
    try:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (path,)
    if key not in _profile_cache:
        _profile_cache.clear()
        _profile_cache[key] = load_profile(path)
    return _profile_cache[key].layer(layer.name)


def _position_weight(start: int, count: int, per_token: int) -> int:
    """Sum of (position + 1) over calls start..start+count-1 made per_token times a position.

    An attention call at position p reads p + 1 cached positions, so this is the work those
    calls did in units of "one attended position".
    """
    def prefix(n):            # sum over j < n of (j // per_token + 1)
        q, r = divmod(n, per_token)
        return per_token * q * (q + 1) // 2 + r * (q + 1)
    return prefix(start + count) - prefix(start)


def measured_costs(layer: LayerInfo, lp) -> dict[str, float]:
    """Tier -> cycles per unit of work, for every tier the profile timed.

    Calls at tier i all come after the calls at lower tiers (ladders only climb), so for
    attention, whose cost grows with the position, each tier's cycles are divided by the
    positions its calls attended; other layers cost the same per call.
    """
    costs = {}
    start = 0
    for index, tier in enumerate(TIERS):
        calls, cycles = lp.calls[index], lp.cycles[index]
        if calls and cycles:
            units = (_position_weight(start, calls, layer.calls_per_token)
                     if layer.kind == "attention" else calls)
            costs[tier] = cycles / units
        start += calls
    return costs


def pgo_decision(layer: LayerInfo, variables: Mapping[str, str]) -> Decision:
    hot_calls = _hot_calls(variables)
    lp = _profile_for(layer, variables)
    if lp is None or lp.total_calls < hot_calls:
        return tiered_decision(layer, variables)
    costs = measured_costs(layer, lp)
    if len(costs) < 2:
        return tiered_decision(layer, variables)      # nothing to compare against
    best = min(costs, key=lambda tier: (costs[tier], TIERS.index(tier)))
    return Decision(ladder=[best], calls=[], cycles=[], preload=False,
                    stop_profiling=_flag(variables, "STOP_PROFILING"), max_cores=max_cores(layer, variables)[0])


TIERED = Policy(
    name="tiered",
    description="Default. JIT-style climb: cheap layers O0->O2 after ~30 calls (.NET), heavy "
                "layers O0->O2->O3 on HotSpot's 200/5000 thresholds scaled by work per call, "
                "or on a cycle budget; split layers too small to pay for the split points "
                "use fewer cores (max_cores).",
    decide=tiered_decision,
    options={"STOP_PROFILING": STOP_PROFILING_HELP,
             "SPLIT_CYCLES": SPLIT_CYCLES_HELP,
             "JIT_COMPILE_CYCLES": "JIT=llvm: cycles one run-time compile is assumed to take (default "
                                   "100000000); a layer moves to its O3@host tier once it has spent what "
                                   "the compile costs core 0 at its last ahead-of-time tier: all of it "
                                   "with CORES=1 or all, only core 1's lost split share with CORES=2 or "
                                   "more (bareflow/policy/jit.py, docs/policies.md)"})

FIXED = Policy(
    name="fixed",
    description="Every layer runs one tier for the whole run (TIER, default O2); no promotion.",
    decide=fixed_decision,
    options={"TIER": "O0, O1, O2 or O3: the tier every layer runs at (default O2); with JIT=llvm also "
                     "a run-time tier such as O3@host (after one call at O0)",
             "STOP_PROFILING": STOP_PROFILING_HELP})

PGO = Policy(
    name="pgo",
    description="Profile-guided: layers that were hot in a measured run start at the tier "
                "that ran fastest there; other layers fall back to 'tiered'.",
    decide=pgo_decision,
    options={"PROFILE": "required: a PROFILE.BIN (`scons profile IMAGE=...`) or a serial log "
                        "with a BAREFLOW-RESULT line",
             "PGO_HOT_CALLS": f"a layer is hot when the profiled run called it at least this "
                              f"often (default {DOTNET_TIER1_CALLS})",
             "SPLIT_CYCLES": SPLIT_CYCLES_HELP,
             "STOP_PROFILING": STOP_PROFILING_HELP,
             "JIT_COMPILE_CYCLES": "JIT=llvm: as for 'tiered', which decides the layers that were "
                                   "not hot"})


@hookimpl
def bareflow_register_policies():
    return [TIERED, FIXED, PGO]


@hookimpl
def bareflow_register_variables():
    return [
        Variable("TIER", FIXED.options["TIER"], DEFAULT_FIXED_TIER, kind="enum", allowed=runtiers.ALL_TIERS),
        Variable("STOP_PROFILING", STOP_PROFILING_HELP, "no", kind="bool"),
        Variable("PGO_HOT_CALLS", PGO.options["PGO_HOT_CALLS"], str(DOTNET_TIER1_CALLS),
                 kind="int", low=1, high=MAX_CALLS),
        Variable("JIT_COMPILE_CYCLES", TIERED.options["JIT_COMPILE_CYCLES"], str(DEFAULT_COMPILE_CYCLES),
                 kind="int", low=COMPILE_CYCLES_RANGE[0], high=COMPILE_CYCLES_RANGE[1]),
        Variable("SPLIT_CYCLES", SPLIT_CYCLES_HELP, str(DEFAULT_SPLIT_CYCLES),
                 kind="int", low=SPLIT_CYCLES_RANGE[0], high=SPLIT_CYCLES_RANGE[1]),
    ]


@hookimpl
def bareflow_configure(variables):
    """Reject bad values for the chosen built-in policy before anything is built."""
    policy = variables.get("POLICY", "tiered")
    if policy not in ("tiered", "fixed", "pgo"):
        return
    _flag(variables, "STOP_PROFILING")
    if policy != "fixed":
        split_cycles(variables)
    if policy == "fixed":
        _tier(variables)
    if policy == "pgo":
        _hot_calls(variables)
        path = str(variables.get("PROFILE", "")).strip()
        if not path:
            raise BareflowError("POLICY=pgo needs PROFILE=path (a PROFILE.BIN from "
                                "`scons profile` or a log with a BAREFLOW-RESULT line)")
        from bareflow.policy.profile import load_profile
        if not load_profile(path).layers:
            raise BareflowError(f"PROFILE={path} holds no layer measurements (the empty profile of an "
                                f"image no run wrote back): pgo would only repeat 'tiered'; boot the image "
                                f"(scons run), then scons profile")

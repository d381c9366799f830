"""Tiering policies: what a policy is told, what it answers, and how answers are checked.

A policy looks at one layer at a time (LayerInfo) and answers with a Decision: the ladder of
tiers the kernel climbs for that layer and the call/cycle triggers between rungs.  Policy
code comes from plugins, so every answer is validated here before it reaches the policy
table, and every error names the plugin, the policy, the layer and the offending field.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from bareflow.errors import BareflowError, where_raised
from bareflow.tiers.levels import TIERS

if TYPE_CHECKING:
    from bareflow.policy.profile import LayerProfile

MAX_TIERS = 4
MAX_CALLS = 10**9          # policy-table limit on calls[i]
MAX_CYCLES = 10**15        # policy-table limit on cycles[i]


@dataclass(frozen=True)
class LayerInfo:
    """What a policy knows about one layer module for the build being made.

    The cost fields are estimates from the model header (bareflow.model.checkpoint); `profile`
    holds what a previous run measured, when the build was given PROFILE=path.  A policy is
    asked once per ISA level the image carries (`isa`, out of `isa_levels`) and may answer
    differently per level; the kernel uses the answers of the level it picks at boot.
    """
    name: str                      # "qkv"
    kind: str                      # "matmul", "norm", "attention", ... (layers.LAYER_KINDS)
    flops_per_call: int
    weight_bytes_per_call: int
    calls_per_token: int
    tokens: int                    # positions the run processes (the `steps` setting)
    profile: Optional["LayerProfile"] = None
    token_share: float = 0.0       # this layer's fraction of one token's work, 0..1
    isa: str = "x86-64"            # the ISA level this decision is for (one per level in ISA=)
    isa_levels: tuple = ("x86-64",)  # every level the image carries, lowest first
    cores: int = 0                 # CORES: cores the run splits layers over; 0 = all that start (unknown here)
    split: bool = False            # the kernel splits this layer's calls across cores (docs/runtime.md)
    jit: str = "none"              # the image's run-time compiler: "none" or "llvm" (docs/jit.md)
    split_share: float = 1.0       # fraction of one token's work in split layers, 0..1 (1 = unknown: all)

    @property
    def work_per_call(self) -> int:
        """FLOPs plus weight bytes streamed: the unit the built-in policies scale by."""
        return self.flops_per_call + self.weight_bytes_per_call

    @property
    def expected_calls(self) -> int:
        return self.calls_per_token * self.tokens


@dataclass
class Decision:
    """One layer's answer: climb `ladder`; leave ladder[i] after calls[i] calls or cycles[i] cycles.

    calls/cycles have one entry per step (len(ladder) - 1); 0 means "no trigger of this
    kind"; `cycles` may be left empty for no cycle triggers at all.
    """
    ladder: list[str]
    calls: list[int] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)
    preload: bool = False
    stop_profiling: bool = False
    max_cores: int = 0              # split over at most this many cores; 0 = no limit (policy table byte 19)


MAX_CORES = 64                      # BF_MAX_CORES in src/runtime/rt.h


@dataclass(frozen=True)
class Policy:
    """A named tiering rule; `options` maps the build variables it reads to their help."""
    name: str
    description: str
    decide: Callable[[LayerInfo, Mapping[str, str]], Decision]
    options: Mapping[str, str] = field(default_factory=dict)


def _where(layer, plugin, policy) -> str:
    parts = []
    if plugin is not None:
        parts.append(f"plugin {plugin!r}")
    if policy is not None:
        parts.append(f"policy {policy!r}")
    name = getattr(layer, "name", layer)
    parts.append(f"layer {name!r}")
    return ", ".join(parts)


def _int_list(value, field_name, fail) -> list[int]:
    if not isinstance(value, (list, tuple)):
        fail(field_name, f"must be a list of integers, not {type(value).__name__}")
    out = []
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            fail(f"{field_name}[{index}]", f"must be an integer, not {type(item).__name__} {item!r}")
        out.append(int(item))
    return out


def validate_decision(decision: Any, layer, plugin: str | None = None,
                      policy: str | None = None) -> Decision:
    """Check a policy's answer for one layer; return a normalised copy.

    Normalised: lists (not tuples) of plain ints, an empty `cycles` expanded to zeros.
    `layer` is a LayerInfo or a layer name; plugin/policy only make messages precise.
    """
    where = _where(layer, plugin, policy)

    def fail(field_name, problem):
        raise BareflowError(f"{where}: decision field {field_name!r} {problem}")

    if not isinstance(decision, Decision):
        raise BareflowError(f"{where}: the policy returned {type(decision).__name__}, "
                            f"not a bareflow.policy.api.Decision")
    ladder = decision.ladder
    if not isinstance(ladder, (list, tuple)):
        fail("ladder", f"must be a list of tier names, not {type(ladder).__name__}")
    if not ladder:
        fail("ladder", "is empty; give at least one tier")
    if len(ladder) > MAX_TIERS:
        fail("ladder", f"has {len(ladder)} tiers; at most {MAX_TIERS} are allowed")
    from bareflow.tiers import runtime as runtiers
    for index, tier in enumerate(ladder):
        if runtiers.tier_code(tier) is None:
            fail(f"ladder[{index}]", f"is {tier!r}, not a tier ({', '.join(TIERS)}, or a run-time tier "
                                     f"such as {runtiers.RUN_TIME_TIERS[2]!r}; docs/jit.md)")
    if runtiers.is_run_time(ladder[0]):
        fail("ladder[0]", f"is the run-time tier {ladder[0]!r}; a layer starts at an ahead-of-time tier")
    if getattr(layer, "jit", "llvm") == "none" and any(runtiers.is_run_time(t) for t in ladder):
        fail("ladder", f"{list(ladder)} names run-time tiers, but the image is built with JIT=none "
                       "(build with JIT=llvm)")
    codes = [runtiers.tier_code(t) for t in ladder]
    for index in range(1, len(codes)):
        if codes[index] <= codes[index - 1]:
            fail("ladder", f"{list(ladder)} must climb strictly ({ladder[index - 1]} is followed "
                           f"by {ladder[index]})")
    steps = len(ladder) - 1
    calls = _int_list(decision.calls, "calls", fail)
    cycles = _int_list(decision.cycles, "cycles", fail)
    if len(calls) != steps:
        fail("calls", f"has {len(calls)} thresholds; a {len(ladder)}-tier ladder needs {steps}")
    if not cycles:
        cycles = [0] * steps
    elif len(cycles) != steps:
        fail("cycles", f"has {len(cycles)} thresholds; a {len(ladder)}-tier ladder needs {steps} "
                       f"(or none)")
    for index in range(steps):
        if calls[index] < 0:
            fail(f"calls[{index}]", f"is negative ({calls[index]})")
        if calls[index] > MAX_CALLS:
            fail(f"calls[{index}]", f"is {calls[index]}, above the limit {MAX_CALLS}")
        if cycles[index] < 0:
            fail(f"cycles[{index}]", f"is negative ({cycles[index]})")
        if cycles[index] > MAX_CYCLES:
            fail(f"cycles[{index}]", f"is {cycles[index]}, above the limit {MAX_CYCLES}")
        if calls[index] == 0 and cycles[index] == 0:
            fail(f"calls[{index}]", f"and cycles[{index}] are both 0: the step "
                                    f"{ladder[index]} -> {ladder[index + 1]} would never happen")
    for flag in ("preload", "stop_profiling"):
        if not isinstance(getattr(decision, flag), bool):
            fail(flag, f"must be True or False, not {getattr(decision, flag)!r}")
    max_cores = decision.max_cores
    if isinstance(max_cores, bool) or not isinstance(max_cores, numbers.Integral) or not 0 <= max_cores <= MAX_CORES:
        fail("max_cores", f"is {max_cores!r}; expected a whole number 0..{MAX_CORES} (0 = no limit)")
    return Decision(list(ladder), calls, cycles, decision.preload, decision.stop_profiling, int(max_cores))


def registered_policies(pm) -> dict[str, Any]:
    """name -> Policy from every plugin's bareflow_register_policies, each checked for the shape
    of a Policy (callable decide, string description, options {NAME: help}); errors name the plugin."""
    result = {}
    for reg in pm.registrations("bareflow_register_policies"):
        policy = reg.obj
        where = f"plugin {reg.plugin!r}: policy {reg.name!r}"
        if not callable(getattr(policy, "decide", None)):
            raise BareflowError(f"{where} has no callable 'decide'")
        if not isinstance(getattr(policy, "description", ""), str):
            raise BareflowError(f"{where}: 'description' must be a string")
        options = getattr(policy, "options", {})
        if not isinstance(options, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
            raise BareflowError(f"{where}: 'options' must map variable names to help strings")
        result[reg.name] = policy
    return result

def policy_owner(pm, policy_name: str) -> str:
    """The name of the plugin that registers policy `policy_name`."""
    for reg in pm.registrations("bareflow_register_policies"):
        if reg.name == policy_name:
            return reg.plugin
    raise BareflowError(f"no plugin registers policy {policy_name!r}")


def ignored_options(pm, policy_name: str, typed) -> list[str]:
    """One note per variable in `typed` (the names on the command line) that is an option of
    some registered policy but not of `policy_name`: `scons image TIER=O3` without POLICY=fixed
    builds the default policy, which never reads TIER.  Empty when the policy is unknown
    (decide_all reports that)."""
    policies = registered_policies(pm)
    chosen = policies.get(policy_name)
    if chosen is None:
        return []
    notes = []
    for name in sorted(typed):
        if name in (chosen.options or {}):
            continue
        owners = sorted(p.name for p in policies.values() if name in (p.options or {}))
        if owners:
            readers = f"policy {owners[0]} reads" if len(owners) == 1 else \
                f"policies {', '.join(owners)} read"
            notes.append(f"{name} is ignored: only {readers} it, not POLICY={policy_name} "
                         f"(add POLICY={owners[0]})")
    return notes


def decide_all(pm, policy_name: str, layers, variables: Mapping[str, str]) -> dict[str, Decision]:
    """Ask the named policy about every layer, let observers adjust, validate; in layer order."""
    policies = registered_policies(pm)
    if policy_name not in policies:
        available = ", ".join(sorted(policies)) or "(none registered)"
        raise BareflowError(f"POLICY={policy_name!r} is not a registered policy; "
                            f"available: {available} (see `scons plugins`)")
    policy = policies[policy_name]
    owner = policy_owner(pm, policy_name)
    frozen_vars = MappingProxyType(dict(variables))
    decisions: dict[str, Decision] = {}
    for layer in layers:
        if layer.name in decisions:
            raise BareflowError(f"layer {layer.name!r} is listed twice")
        try:
            answer = policy.decide(layer, frozen_vars)
        except BareflowError as exc:
            raise BareflowError(f"plugin {owner!r}, policy {policy_name!r}, "
                                f"layer {layer.name!r}: {exc}") from exc
        except Exception as exc:
            raise BareflowError(f"plugin {owner!r}, policy {policy_name!r} failed for layer "
                                f"{layer.name!r}: {type(exc).__name__}: {exc}{where_raised(exc)}") from exc
        decision = validate_decision(answer, layer, owner, policy_name)
        # Observers are called one by one and each result is re-validated, so an observer
        # that breaks a decision is the one named in the error.
        observers = pm.hook_caller("bareflow_policy_decided").get_hookimpls()
        for impl in reversed(observers):      # pluggy's calling order
            if impl.wrapper or impl.hookwrapper:
                continue
            args = {"layer": layer, "decision": decision}
            impl.function(*[args[a] for a in impl.argnames])
            decision = validate_decision(decision, layer, impl.plugin_name, policy_name)
        decisions[layer.name] = decision
    return decisions


def _step_text(calls: int, cycles: int) -> str:
    triggers = []
    if calls:
        triggers.append(f"{calls} call" if calls == 1 else f"{calls} calls")
    if cycles:
        triggers.append(f"{cycles} cycles")
    return " or ".join(triggers)


def summary(decisions: Mapping[str, Decision], layers) -> str:
    """One line per layer: the ladder with its triggers and the flags."""
    names = [getattr(layer, "name", layer) for layer in layers]
    names += [name for name in decisions if name not in names]
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        decision = decisions.get(name)
        if decision is None:
            lines.append(f"{name:<{width}}  (no decision)")
            continue
        text = decision.ladder[0]
        cycles = decision.cycles or [0] * len(decision.calls)
        for index, tier in enumerate(decision.ladder[1:]):
            text += f" -({_step_text(decision.calls[index], cycles[index])})-> {tier}"
        flags = [flag for flag, on in (("preload", decision.preload),
                                       ("stop-profiling", decision.stop_profiling)) if on]
        if decision.max_cores:
            flags.append(f"at most {decision.max_cores} core{'s' if decision.max_cores > 1 else ''}")
        if flags:
            text += "  [" + ", ".join(flags) + "]"
        lines.append(f"{name:<{width}}  {text}")
    return "\n".join(lines) + "\n"


def tiers_needed(decisions: Mapping[str, Decision]) -> dict[str, list[str]]:
    """Layer -> the tiers whose module files the image must contain, lowest first."""
    return {name: sorted({t for t in d.ladder if t in TIERS}, key=TIERS.index) for name, d in decisions.items()}

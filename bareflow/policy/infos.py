"""The LayerInfo a policy sees for each layer: cost estimates, call counts, a measured profile.

Built from the model's per-layer costs (bareflow.model.checkpoint.layer_costs) and, when the build
was given PROFILE=path, the profile of an earlier run (bareflow.policy.profile).
"""
from __future__ import annotations

import os
from typing import Mapping

from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_KINDS, LAYER_NAMES, calls_per_token
from bareflow.policy.api import LayerInfo
from bareflow.policy.profile import LayerProfile, load_profile


def _config_value(config, key):
    if config is None:
        return None
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def _whole(value, what) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise BareflowError(f"{what} must be a number, not {value!r}")
    if value < 0 or value >= 2**63:
        raise BareflowError(f"{what} is {value!r}, outside 0..2^63")
    return int(round(value))


def _layer_profile(profile, name):
    """The layer's entry; a layer the profiled run never called gets an all-zero entry, so
    that `LayerInfo.profile is None` means exactly "no profile was supplied"."""
    if profile is None:
        return None
    return profile.layer(name) or LayerProfile(name, (0, 0, 0, 0), (0, 0, 0, 0))


# Layers whose calls the kernel splits across cores (layer ABI 3, src/runtime/parallel.c).
SPLIT_LAYERS = frozenset({"qkv", "attn", "attnout", "ffn", "classify"})


def _check_profile_model(profile, n_layers, source):
    """A profile measured on another model misleads every decision: refuse it when its call
    counts show another block count.  The kernel calls embed once per position and qkv once
    per block per position (calls_per_token), so the run's qkv/embed ratio is its model's
    n_layers.  (The profile file records no model identity; models with equal block counts
    pass.)"""
    embed, qkv = profile.layer("embed"), profile.layer("qkv")
    if embed is None or qkv is None or not embed.total_calls:
        return
    positions, blocks = embed.total_calls, qkv.total_calls
    if blocks != n_layers * positions:
        measured = f"{blocks // positions} blocks" if blocks % positions == 0 else \
            f"{blocks} qkv calls over {positions} positions"
        raise BareflowError(f"{source}: the profiled run's model had {measured} per position, this "
                            f"image's model has {n_layers}: the profile is of another model; build "
                            f"with the MODEL (and TOKENIZER) of the profiled image, or boot this one "
                            f"(scons run) and use its profile (scons profile)")


def layer_infos(config, costs: Mapping[str, tuple], steps: int, profile=None, cores: int = 0,
                profile_source: str = "") -> list[LayerInfo]:
    """LayerInfo for every layer, in LAYER_NAMES order.

    `config` is the model's ModelConfig (or a mapping with n_layers / seq_len; None skips the
    cross-checks); `costs` is bareflow.model.checkpoint.layer_costs(config); `steps` the positions
    a run processes; `profile` a profile.Profile, a path to load one from, or None; `cores` the
    CORES setting (0 = every core that starts); `profile_source` names the profile in errors
    (e.g. "PROFILE=build/profile.bin").  A profile whose call counts show a model with another
    number of blocks than `config` raises BareflowError.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BareflowError(f"steps must be a positive integer, not {steps!r}")
    seq_len = _config_value(config, "seq_len")
    if seq_len is not None and steps > seq_len:
        raise BareflowError(f"steps={steps} exceeds the model's seq_len {seq_len}")
    if set(costs) != set(LAYER_NAMES):
        missing = [n for n in LAYER_NAMES if n not in costs]
        extra = sorted(n for n in costs if n not in LAYER_NAMES)
        raise BareflowError(f"layer cost table: missing {missing}, unknown {extra}")
    profile_path = None
    if isinstance(profile, (str, os.PathLike)):
        profile_path = os.fspath(profile)
        profile = load_profile(profile)
    if profile is not None:
        unknown = sorted(n for n in profile.layers if n not in LAYER_NAMES)
        if unknown:
            raise BareflowError(f"profile has layer {unknown[0]!r}, which BareFlow does not have "
                                f"(known: {', '.join(LAYER_NAMES)})")
    n_layers = _config_value(config, "n_layers")
    expected_calls = calls_per_token(n_layers) if n_layers is not None else None
    if profile is not None and n_layers is not None:
        _check_profile_model(profile, n_layers, profile_source or f"profile {profile_path or ''}".strip())

    rows = []
    for name in LAYER_NAMES:
        entry = costs[name]
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise BareflowError(f"layer cost table: layer {name!r} needs (flops_per_call, "
                                f"weight_bytes_per_call, calls_per_token), got {entry!r}")
        flops = _whole(entry[0], f"layer cost table: layer {name!r} flops_per_call")
        weight = _whole(entry[1], f"layer cost table: layer {name!r} weight_bytes_per_call")
        cpt = _whole(entry[2], f"layer cost table: layer {name!r} calls_per_token")
        if cpt < 1:
            raise BareflowError(f"layer cost table: layer {name!r} calls_per_token is {cpt}")
        if expected_calls is not None and cpt != expected_calls[name]:
            raise BareflowError(f"layer cost table: layer {name!r} calls_per_token is {cpt}, but a "
                                f"{n_layers}-block model calls it {expected_calls[name]} times")
        rows.append((name, flops, weight, cpt))

    token_work = sum((flops + weight) * cpt for _, flops, weight, cpt in rows)
    split_work = sum((flops + weight) * cpt for name, flops, weight, cpt in rows if name in SPLIT_LAYERS)
    split_share = split_work / token_work if token_work else 1.0
    infos = []
    for name, flops, weight, cpt in rows:
        share = (flops + weight) * cpt / token_work if token_work else 0.0
        infos.append(LayerInfo(
            name=name, kind=LAYER_KINDS[name], flops_per_call=flops,
            weight_bytes_per_call=weight, calls_per_token=cpt, tokens=steps,
            profile=_layer_profile(profile, name),
            token_share=share, cores=cores, split=name in SPLIT_LAYERS, split_share=split_share))
    return infos

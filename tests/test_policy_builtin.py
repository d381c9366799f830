"""The built-in policies: tiered (default), fixed, pgo, and their variables."""
import json
import math

import pytest

from bareflow.core import builtin
from bareflow.policy import builtin as bp
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAMES, calls_per_token
from bareflow.policy.infos import layer_infos
from bareflow.core.manager import load_plugins
from bareflow.policy.api import LayerInfo, decide_all, validate_decision
from bareflow.policy.profile import LayerProfile, Profile, encode_profile

HEAVY = {"qkv", "attnout", "ffn", "classify"}


@pytest.fixture(autouse=True)
def only_policy_builtin(monkeypatch):
    monkeypatch.setattr(builtin, "BUILTIN_PLUGINS", ["bareflow.policy.builtin"])


def stories_costs(dim=64, hidden=172, n_layers=5, kv=32, vocab=512, context=16):
    """Costs shaped like bareflow.model.checkpoint.layer_costs for the stories260K header."""
    cpt = calls_per_token(n_layers)
    per_call = {
        "embed": (0, 4 * dim), "rmsnorm": (4 * dim + 3, 4 * dim),
        "qkv": (2 * dim * (dim + 2 * kv), 4 * dim * (dim + 2 * kv)),
        "rope": (5 * (dim + kv), 0),
        "attn": (8 * (4 * context * 8 + 5 * context), 8 * context * kv),
        "attnout": (2 * dim * dim + dim, 4 * dim * dim),
        "ffn": (6 * dim * hidden + 5 * hidden + dim, 12 * dim * hidden),
        "classify": (2 * dim * vocab, 4 * dim * vocab), "sampler": (vocab, 0),
    }
    return {name: (*per_call[name], cpt[name]) for name in LAYER_NAMES}


def configure(variables):
    load_plugins(variables, entry_points=False, environ={}).hook.bareflow_configure(
        variables=variables)


def decide(policy, steps=256, variables=None, profile=None, costs=None):
    pm = load_plugins(variables or {}, entry_points=False, environ={})
    rows = layer_infos({"n_layers": 5, "seq_len": 512}, costs or stories_costs(), steps, profile)
    return decide_all(pm, policy, rows, variables or {}), {r.name: r for r in rows}


def test_tiered_cheap_layers_follow_dotnet():
    decisions, rows = decide("tiered")
    for name in set(LAYER_NAMES) - HEAVY:
        d = decisions[name]
        assert d.ladder == ["O0", "O2"], name
        assert d.calls == [bp.DOTNET_TIER1_CALLS] and d.cycles == [0], name
        assert not d.preload and not d.stop_profiling


def test_tiered_heavy_layers_follow_hotspot_scaled_by_work():
    decisions, rows = decide("tiered")
    for name in HEAVY:
        d = decisions[name]
        assert d.ladder == ["O0", "O2", "O3"], name
        assert d.preload
        assert d.cycles == [200 * bp.REFERENCE_WORK, 5000 * bp.REFERENCE_WORK]
        scale = bp.REFERENCE_WORK / rows[name].work_per_call
        cap = math.ceil(rows[name].expected_calls / 4)
        assert d.calls == [max(2, min(round(200 * scale), cap)), max(2, min(round(5000 * scale), cap))]
        assert d.calls[0] < 200 and d.calls[1] < 5000      # sooner than a JIT would
    # more work per call -> fewer calls before promotion
    by_work = sorted(HEAVY, key=lambda n: rows[n].work_per_call)
    firsts = [decisions[n].calls[0] for n in by_work]
    assert firsts == sorted(firsts, reverse=True)


def test_tiered_heaviness_comes_from_the_share_of_a_token():
    # The same per-call work counts as heavy when called often enough per token.
    base = dict(name="x", kind="norm", flops_per_call=500, weight_bytes_per_call=0,
                calls_per_token=1, tokens=100)
    light = bp.tiered_decision(LayerInfo(**base, token_share=0.01), {})
    heavy = bp.tiered_decision(LayerInfo(**base, token_share=0.2), {})
    assert light.ladder == ["O0", "O2"] and heavy.ladder == ["O0", "O2", "O3"]


def test_tiered_never_waits_past_a_quarter_of_the_run():
    decisions, rows = decide("tiered", steps=8)
    for name, d in decisions.items():
        cap = max(2, math.ceil(rows[name].expected_calls / 4))
        assert all(c <= cap for c in d.calls), (name, d.calls, cap)
    assert decisions["embed"].calls == [2]          # 8 calls in the run -> promote after 2


def test_tiered_is_deterministic_and_valid():
    first, rows = decide("tiered")
    again, _ = decide("tiered")
    assert first == again
    for name, d in first.items():
        assert validate_decision(d, name) == d


def test_stop_profiling_variable():
    decisions, _ = decide("tiered", variables={"STOP_PROFILING": "yes"})
    assert all(d.stop_profiling for d in decisions.values())
    with pytest.raises(BareflowError, match="STOP_PROFILING='maybe': expected a yes/no value"):
        decide("tiered", variables={"STOP_PROFILING": "maybe"})
    with pytest.raises(BareflowError, match="STOP_PROFILING='maybe': expected a yes/no value"):
        configure({"STOP_PROFILING": "maybe"})


def test_fixed_policy():
    decisions, _ = decide("fixed")
    assert {tuple(d.ladder) for d in decisions.values()} == {("O2",)}
    decisions, _ = decide("fixed", variables={"POLICY": "fixed", "TIER": "O3"})
    assert all(d.ladder == ["O3"] and d.calls == [] for d in decisions.values())
    with pytest.raises(BareflowError, match="TIER='O7': expected one of O0, O1, O2, O3"):
        configure({"POLICY": "fixed", "TIER": "O7"})
    with pytest.raises(BareflowError, match="policy 'fixed', layer 'embed': TIER='O7'"):
        decide("fixed", variables={"TIER": "O7"})
    configure({"POLICY": "tiered", "TIER": "O7"})      # TIER only matters to "fixed"


# --- pgo -----------------------------------------------------------------------------------------

def measured(name, per_call, calls=(40, 0, 400, 400)):
    """A LayerProfile whose tiers cost per_call[tier] cycles per call."""
    cycles = tuple(c * p for c, p in zip(calls, per_call))
    return LayerProfile(name, calls, cycles, "O3", 2)


def test_pgo_goes_straight_to_the_fastest_measured_tier():
    profile = Profile(tokens=200, cycles_per_second=10**9, total_cycles=10**9, layers={
        "ffn": measured("ffn", (900, 0, 300, 310)),          # O3 measured slower than O2
        "qkv": measured("qkv", (900, 0, 300, 200)),
        "rmsnorm": measured("rmsnorm", (50, 0, 20, 0), (40, 0, 500, 0)),
        "classify": LayerProfile("classify", (10, 0, 5, 0), (9000, 0, 900, 0), "O2", 1),  # cold
        "sampler": LayerProfile("sampler", (200, 0, 0, 0), (5000, 0, 0, 0), "O0", 0),  # 1 tier
    })
    variables = {"POLICY": "pgo", "PROFILE": "/nonexistent: the attached profile is used"}
    decisions, rows = decide("pgo", variables=variables, profile=profile)
    assert decisions["ffn"].ladder == ["O2"] and decisions["ffn"].calls == []
    assert decisions["qkv"].ladder == ["O3"]
    assert decisions["rmsnorm"].ladder == ["O2"]
    tiered = {name: validate_decision(bp.tiered_decision(rows[name], variables), name)
              for name in rows}
    for fallback in ("classify", "sampler", "embed", "attn"):   # cold, one tier, no data
        assert decisions[fallback] == tiered[fallback], fallback
    hotter = {**variables, "PGO_HOT_CALLS": "5"}
    decisions, _ = decide("pgo", variables=hotter, profile=profile)
    assert decisions["classify"].ladder == ["O2"]


def test_pgo_corrects_attention_for_position():
    # 5 attn calls per position; the first 20 calls (positions 0-3) ran at O0, the next 380
    # (positions 4-79) at O2.  O2 is cheaper per attended position, but its calls attend far
    # more positions, so comparing raw cycles per call would wrongly pick O0.
    per_position = {"O0": 100, "O2": 60}
    def cycles(start, count, rate):
        return sum((j // 5 + 1) * rate for j in range(start, start + count))
    lp = LayerProfile("attn", (20, 0, 380, 0),
                      (cycles(0, 20, 100), 0, cycles(20, 380, 60), 0), "O2", 1)
    assert lp.cycles_per_call("O0") < lp.cycles_per_call("O2")
    info = LayerInfo("attn", "attention", 1000, 1000, 5, 80, lp, 0.3)
    costs = bp.measured_costs(info, lp)
    assert costs == pytest.approx(per_position)
    assert bp.pgo_decision(info, {}).ladder == ["O2"]
    assert bp._position_weight(0, 7, 5) == 5 * 1 + 2 * 2
    assert bp._position_weight(3, 4, 5) == 2 * 1 + 2 * 2


def test_pgo_loads_profile_from_variable(tmp_path):
    log = tmp_path / "serial.log"
    layers = {n: {"calls": [0, 0, 0, 0], "cycles": [0, 0, 0, 0], "tier": "O0", "changes": []}
              for n in LAYER_NAMES}
    layers["ffn"] = {"calls": [40, 0, 400, 0], "cycles": [40000, 0, 80000, 0], "tier": "O2",
                     "changes": [{"call": 40, "from": "O0", "to": "O2"}]}
    result = {"prompt": "", "prompt_tokens": [1], "tokens": [5, 6], "text": "", "steps": 3,
              "temperature": 0, "seed": 42, "tokens_per_second": 2.0, "cycles_per_second": 1000,
              "isa": "x86-64", "layers": layers, "profiling_overhead_cycles": 20, "boot_cycles": 9}
    log.write_text("booting...\nBAREFLOW-RESULT " + json.dumps(result) + "\n")
    variables = {"POLICY": "pgo", "PROFILE": str(log)}
    decisions, _ = decide("pgo", variables=variables)
    assert decisions["ffn"].ladder == ["O2"]
    binary = tmp_path / "PROFILE.BIN"
    binary.write_bytes(encode_profile(Profile(3, 1000, 1000, {"ffn": LayerProfile(
        "ffn", (40, 0, 0, 400), (40000, 0, 0, 4000), "O3", 1)})))
    decisions, _ = decide("pgo", variables={"POLICY": "pgo", "PROFILE": str(binary)})
    assert decisions["ffn"].ladder == ["O3"]


def test_pgo_without_profile_is_an_error():
    with pytest.raises(BareflowError, match="POLICY=pgo needs PROFILE=path"):
        configure({"POLICY": "pgo", "PROFILE": ""})
    info = LayerInfo("ffn", "matmul", 1, 1, 5, 10)
    with pytest.raises(BareflowError, match="policy 'pgo' needs a runtime profile"):
        bp.pgo_decision(info, {})
    with pytest.raises(BareflowError, match=r"PGO_HOT_CALLS='lots': expected an integer in 1\.\.10\^9"):
        configure({"POLICY": "pgo", "PROFILE": "x", "PGO_HOT_CALLS": "lots"})


def test_pgo_refuses_the_empty_profile_of_an_image_no_run_wrote_back(tmp_path):
    from bareflow.policy.profile import empty_profile
    unrun = tmp_path / "profile.bin"
    unrun.write_bytes(empty_profile())
    with pytest.raises(BareflowError, match=f"PROFILE={unrun} holds no layer measurements"):
        configure({"POLICY": "pgo", "PROFILE": str(unrun)})


def test_with_the_models_cost_function():
    model = pytest.importorskip("bareflow.model.checkpoint")
    from pathlib import Path
    checkpoint = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stories260K.bin"
    if not checkpoint.exists():
        pytest.skip(f"{checkpoint} is absent (../shared/data)")
    config = model.read_config(checkpoint)
    pm = load_plugins({}, entry_points=False, environ={})
    rows = layer_infos(config, model.layer_costs(config, 16), 32)
    decisions = decide_all(pm, "tiered", rows, {})
    assert {n for n, d in decisions.items() if len(d.ladder) == 3} == HEAVY


def test_a_profile_of_another_model_is_refused_naming_both_block_counts():
    # SmolLM2's profile (30 blocks) handed to a build of a 5-block model: every pgo decision
    # would be made on another model's measurements (README's `scons profile` then a bare
    # `scons image PROFILE=... POLICY=pgo` builds the synthetic model).
    def prof(blocks, positions=16):
        def lp(name, calls):
            return LayerProfile(name, (calls, 0, 0, 0), (calls * 100, 0, 0, 0), "O0", 0)
        return Profile(positions - 4, 1000, 1000, {"embed": lp("embed", positions),
                                                  "qkv": lp("qkv", blocks * positions)})
    config = {"n_layers": 5, "seq_len": 512}
    with pytest.raises(BareflowError, match=r"^PROFILE=p\.bin: the profiled run's model had 30 blocks "
                                            r"per position, this image's model has 5: .*MODEL"):
        layer_infos(config, stories_costs(), 32, prof(30), profile_source="PROFILE=p.bin")
    rows = layer_infos(config, stories_costs(), 32, prof(5))
    assert rows[LAYER_NAMES.index("qkv")].profile.total_calls == 80

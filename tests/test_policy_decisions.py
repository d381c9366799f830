"""Decision validation, decide_all (policy errors, observers), summary, tiers_needed, layer_infos."""
import pytest

from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_KINDS, LAYER_NAMES, calls_per_token
from bareflow.policy.infos import layer_infos
from bareflow.core.manager import BareflowPluginManager, PluginHookError
from bareflow.policy.api import (Decision, LayerInfo, Policy, decide_all, summary,
                                     tiers_needed, validate_decision)
from bareflow.policy.profile import LayerProfile, Profile, encode_profile

LAYER = LayerInfo("qkv", "matmul", 16384, 32768, 5, 32)


def check(decision):
    return validate_decision(decision, LAYER, "someplugin", "somepolicy")


def test_valid_decisions_are_normalised():
    d = check(Decision(("O0", "O2", "O3"), (30, 0), [0, 10**6], True, False))
    assert d == Decision(["O0", "O2", "O3"], [30, 0], [0, 1000000], True, False)
    assert type(d.ladder) is list and type(d.calls) is list
    d = check(Decision(["O1", "O3"], [7]))
    assert d.cycles == [0] and d.preload is False and d.stop_profiling is False
    assert check(Decision(["O3"], [], [])) == Decision(["O3"], [], [0] * 0)
    numpy = pytest.importorskip("numpy")
    assert check(Decision(["O0", "O1"], [numpy.int64(5)])).calls == [5]
    assert type(check(Decision(["O0", "O1"], [numpy.int64(5)])).calls[0]) is int
    edge = check(Decision(["O0", "O1", "O2", "O3"], [10**9, 1, 0], [0, 0, 10**15]))
    assert edge.calls == [10**9, 1, 0]


@pytest.mark.parametrize("decision, field, problem", [
    ("O2", "", "returned str, not a bareflow.policy.api.Decision"),
    (Decision("O0"), "ladder", "must be a list of tier names, not str"),
    (Decision([]), "ladder", "is empty"),
    (Decision(["O0", "O1", "O2", "O3", "O3"], [1, 1, 1, 1]), "ladder", "has 5 tiers; at most 4"),
    (Decision(["O0", "O4"], [1]), "ladder[1]", "is 'O4', not a tier"),
    (Decision(["O0", 2], [1]), "ladder[1]", "is 2, not a tier"),
    (Decision(["O2", "O1"], [1]), "ladder", "must climb strictly (O2 is followed by O1)"),
    (Decision(["O2", "O2"], [1]), "ladder", "must climb strictly"),
    (Decision(["O0", "O2"], []), "calls", "has 0 thresholds; a 2-tier ladder needs 1"),
    (Decision(["O0"], [5]), "calls", "has 1 thresholds; a 1-tier ladder needs 0"),
    (Decision(["O0", "O2"], [5], [1, 2]), "cycles", "has 2 thresholds; a 2-tier ladder needs 1"),
    (Decision(["O0", "O2"], 5), "calls", "must be a list of integers, not int"),
    (Decision(["O0", "O2"], [5], 9), "cycles", "must be a list of integers, not int"),
    (Decision(["O0", "O2"], [30.0]), "calls[0]", "must be an integer, not float 30.0"),
    (Decision(["O0", "O2"], [True]), "calls[0]", "must be an integer, not bool"),
    (Decision(["O0", "O2"], ["30"]), "calls[0]", "must be an integer, not str"),
    (Decision(["O0", "O2"], [-1], [5]), "calls[0]", "is negative (-1)"),
    (Decision(["O0", "O2"], [5], [-5]), "cycles[0]", "is negative (-5)"),
    (Decision(["O0", "O2"], [10**9 + 1]), "calls[0]", "above the limit 1000000000"),
    (Decision(["O0", "O2"], [1], [10**15 + 1]), "cycles[0]", "above the limit 1000000000000000"),
    (Decision(["O0", "O2", "O3"], [5, 0], [0, 0]), "calls[1]", "and cycles[1] are both 0: the step "
                                                               "O2 -> O3 would never happen"),
    (Decision(["O0", "O2"], [0]), "calls[0]", "and cycles[0] are both 0"),
    (Decision(["O0", "O2"], [5], [], 1), "preload", "must be True or False, not 1"),
    (Decision(["O0", "O2"], [5], [], False, "yes"), "stop_profiling", "must be True or False"),
])
def test_every_validation_error(decision, field, problem):
    with pytest.raises(BareflowError) as err:
        check(decision)
    message = str(err.value)
    assert message.startswith("plugin 'someplugin', policy 'somepolicy', layer 'qkv': ")
    if field:
        assert f"decision field '{field}' " in message
    assert problem in message


def test_layer_may_be_given_by_name():
    with pytest.raises(BareflowError, match=r"^layer 'ffn': decision field 'ladder' is empty"):
        validate_decision(Decision([]), "ffn")


# --- decide_all ----------------------------------------------------------------------------------

class PolicyPlugin:
    def __init__(self, *policies):
        self.policies = list(policies)

    def bareflow_register_policies(self):
        return self.policies


def manager_with(*plugins):
    pm = BareflowPluginManager()
    for name, plugin in plugins:
        pm.register(plugin, name)
    return pm


def infos(steps=32):
    costs = {name: (1000, 1000, 1) for name in LAYER_NAMES}
    return layer_infos(None, costs, steps)


def test_decide_all_returns_decisions_in_layer_order():
    seen = []

    def decide(layer, variables):
        seen.append((layer.name, variables["X"]))
        return Decision(["O1"], [], [], False, layer.name == "attn")
    pm = manager_with(("p", PolicyPlugin(Policy("one", "", decide))))
    decisions = decide_all(pm, "one", infos(), {"X": "1"})
    assert list(decisions) == list(LAYER_NAMES)
    assert seen == [(name, "1") for name in LAYER_NAMES]
    assert decisions["attn"].stop_profiling and not decisions["ffn"].stop_profiling


def test_unknown_policy_lists_the_available_ones():
    pm = manager_with(("p", PolicyPlugin(Policy("b", "", print), Policy("a", "", print))))
    with pytest.raises(BareflowError, match=r"POLICY='tierd' is not a registered policy; "
                                            r"available: a, b"):
        decide_all(pm, "tierd", infos(), {})


def test_policy_exception_names_plugin_policy_and_layer():
    def decide(layer, variables):
        if layer.name == "rope":
            raise ZeroDivisionError("oops")
        return Decision(["O2"])
    pm = manager_with(("policy-plugin", PolicyPlugin(Policy("crashy", "", decide))))
    with pytest.raises(BareflowError, match="plugin 'policy-plugin', policy 'crashy' failed for "
                                            "layer 'rope': ZeroDivisionError: oops"):
        decide_all(pm, "crashy", infos(), {})


def test_invalid_answer_names_plugin_policy_and_layer():
    def decide(layer, variables):
        return Decision(["O0", "O2"], [0] if layer.name == "ffn" else [3])
    pm = manager_with(("pp", PolicyPlugin(Policy("lazy", "", decide))))
    with pytest.raises(BareflowError, match="plugin 'pp', policy 'lazy', layer 'ffn': decision "
                                            "field 'calls.0.' and cycles.0. are both 0"):
        decide_all(pm, "lazy", infos(), {})


class Observer:
    def __init__(self, change):
        self.change = change
        self.seen = []

    def bareflow_policy_decided(self, layer, decision):
        self.seen.append((layer.name, list(decision.ladder)))
        self.change(layer, decision)


def test_observers_see_and_may_adjust_decisions():
    def preload_ffn(layer, decision):
        if layer.name == "ffn":
            decision.preload = True
    observer = Observer(preload_ffn)
    pm = manager_with(("p", PolicyPlugin(Policy("base", "", lambda l, v: Decision(["O0", "O2"], [4])))),
                      ("obs", observer))
    decisions = decide_all(pm, "base", infos(), {})
    assert [name for name, _ in observer.seen] == list(LAYER_NAMES)
    assert decisions["ffn"].preload and not decisions["qkv"].preload


def test_observer_that_breaks_a_decision_is_named():
    def break_it(layer, decision):
        decision.ladder.append("O1")
    pm = manager_with(("p", PolicyPlugin(Policy("base", "", lambda l, v: Decision(["O2"])))),
                      ("breaker", Observer(break_it)))
    with pytest.raises(BareflowError, match="plugin 'breaker', policy 'base', layer 'embed': "
                                            "decision field 'ladder'"):
        decide_all(pm, "base", infos(), {})


def test_observer_exception_is_named():
    def crash(layer, decision):
        raise RuntimeError("observer down")
    pm = manager_with(("p", PolicyPlugin(Policy("base", "", lambda l, v: Decision(["O2"])))),
                      ("crasher", Observer(crash)))
    with pytest.raises(PluginHookError, match="plugin 'crasher' failed in hook "
                                              "bareflow_policy_decided: RuntimeError"):
        decide_all(pm, "base", infos(), {})


def test_policy_cannot_change_variables():
    def decide(layer, variables):
        variables["POLICY"] = "other"
    pm = manager_with(("p", PolicyPlugin(Policy("mut", "", decide))))
    with pytest.raises(BareflowError, match="failed for layer 'embed': TypeError"):
        decide_all(pm, "mut", infos(), {"POLICY": "mut"})


# --- summary / tiers_needed ----------------------------------------------------------------------

def test_summary_and_tiers_needed():
    decisions = {
        "qkv": Decision(["O0", "O2", "O3"], [8, 40], [400000, 0], True, False),
        "embed": Decision(["O1"], [], [], False, True),
    }
    text = summary(decisions, ["embed", "qkv", "ffn"])
    assert text.splitlines() == [
        "embed  O1  [stop-profiling]",
        "qkv    O0 -(8 calls or 400000 cycles)-> O2 -(40 calls)-> O3  [preload]",
        "ffn    (no decision)",
    ]
    assert tiers_needed(decisions) == {"qkv": ["O0", "O2", "O3"], "embed": ["O1"]}


# --- layer_infos ---------------------------------------------------------------------------------

class Config:
    n_layers = 5
    seq_len = 512


def costs_for(n_layers, big=1000):
    cpt = calls_per_token(n_layers)
    return {name: (big if name == "ffn" else 10, 6, cpt[name]) for name in LAYER_NAMES}


def test_layer_infos_fields():
    rows = layer_infos(Config(), costs_for(5), 64)
    assert [r.name for r in rows] == list(LAYER_NAMES)
    assert [r.kind for r in rows] == [LAYER_KINDS[n] for n in LAYER_NAMES]
    rms = rows[1]
    assert (rms.calls_per_token, rms.tokens, rms.expected_calls) == (11, 64, 704)
    assert rms.work_per_call == 16 and rms.profile is None
    assert abs(sum(r.token_share for r in rows) - 1.0) < 1e-12
    assert max(rows, key=lambda r: r.token_share).name == "ffn"


def test_layer_infos_rejects_bad_input():
    with pytest.raises(BareflowError, match="calls_per_token is 5, but a 5-block model calls it 11"):
        bad = costs_for(5)
        bad["rmsnorm"] = (1, 1, 5)
        layer_infos(Config(), bad, 8)
    with pytest.raises(BareflowError, match=r"missing \['sampler'\], unknown \['extra'\]"):
        bad = costs_for(5)
        del bad["sampler"]
        bad["extra"] = (1, 1, 1)
        layer_infos(Config(), bad, 8)
    with pytest.raises(BareflowError, match="steps=513 exceeds the model's seq_len 512"):
        layer_infos(Config(), costs_for(5), 513)
    with pytest.raises(BareflowError, match="steps must be a positive integer"):
        layer_infos(Config(), costs_for(5), 0)
    with pytest.raises(BareflowError, match="layer 'qkv' flops_per_call must be a number"):
        bad = costs_for(5)
        bad["qkv"] = ("many", 1, 5)
        layer_infos(Config(), bad, 8)
    with pytest.raises(BareflowError, match="layer 'qkv' needs"):
        bad = costs_for(5)
        bad["qkv"] = (1, 5)
        layer_infos(Config(), bad, 8)


def test_layer_infos_attaches_profile(tmp_path):
    lp = LayerProfile("ffn", (30, 0, 100, 0), (3000, 0, 5000, 0), "O2", 1)
    profile = Profile(tokens=10, cycles_per_second=10**9, total_cycles=10**6, layers={"ffn": lp})
    rows = {r.name: r for r in layer_infos(Config(), costs_for(5), 16, profile)}
    assert rows["ffn"].profile == lp
    assert rows["qkv"].profile == LayerProfile("qkv", (0, 0, 0, 0), (0, 0, 0, 0))
    assert layer_infos(Config(), costs_for(5), 16)[0].profile is None
    path = tmp_path / "PROFILE.BIN"
    path.write_bytes(encode_profile(profile))
    rows = {r.name: r for r in layer_infos(Config(), costs_for(5), 16, path)}
    assert rows["ffn"].profile == lp
    stray = Profile(1, 1, 1, {"conv": LayerProfile("conv", (1, 0, 0, 0), (1, 0, 0, 0))})
    with pytest.raises(BareflowError, match="profile has layer 'conv', which BareFlow does not have"):
        layer_infos(Config(), costs_for(5), 16, stray)


def test_an_option_of_another_policy_is_noted_as_ignored():
    # `scons image TIER=O3` without POLICY=fixed silently built the default policy.
    from bareflow.policy.api import ignored_options
    decide = lambda layer, variables: Decision(["O2"])   # noqa: E731
    pm = manager_with(("p", PolicyPlugin(Policy("fixed", "", decide, {"TIER": "t", "STOP": "s"}),
                                         Policy("tiered", "", decide, {"STOP": "s", "SPLIT": "c"}),
                                         Policy("pgo", "", decide, {"SPLIT": "c"}))))
    typed = {"TIER": "O3", "STOP": "1", "SPLIT": "9", "MODEL": "m.gguf"}
    assert ignored_options(pm, "tiered", typed) == [
        "TIER is ignored: only policy fixed reads it, not POLICY=tiered (add POLICY=fixed)"]
    assert ignored_options(pm, "fixed", typed) == [
        "SPLIT is ignored: only policies pgo, tiered read it, not POLICY=fixed (add POLICY=pgo)"]
    assert ignored_options(pm, "nope", typed) == []

"""The tiered policy's run-time rung: its cycle trigger is what one compile costs core 0 —
the whole compile inline (CORES=1, or CORES=all where a spare core is not certain), only core 1's
lost share of the split layers when a spare core compiles (CORES>=2): C·f / (n·(n − 1 − (n − 2)·f))
(bareflow/policy/jit.py, docs/policies.md "Run-time rung").  No LLVM needed."""
import dataclasses

import pytest

from bareflow.core import builtin
from bareflow.core.manager import load_plugins
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAMES
from bareflow.policy import jit
from bareflow.policy.api import LayerInfo, decide_all
from bareflow.policy.builtin import tiered_decision
from bareflow.policy.infos import SPLIT_LAYERS, layer_infos
from test_policy_builtin import stories_costs

C = 100_000_000


def _info(cores, split_share=1.0, share=0.3):
    return LayerInfo("ffn", "matmul", 10**6, 10**6, 5, 64, None, share, cores=cores, split=True, jit="llvm",
                     split_share=split_share)


@pytest.mark.parametrize("cores, split_share, cost", [
    (1, 1.0, C), (1, 0.5, C),              # inline: core 0 waits for all of it, split or not
    (0, 1.0, C),                           # CORES=all: a spare core is not certain
    (2, 1.0, C // 2),                      # core 0 alone does what two did: half the compile's time lost
    (4, 1.0, C // 4),                      # f = 1: C/n
    (2, 0.5, C // 4),                      # two cores: C·f/2 (a token 0.5 + 0.5/2 -> 0.5 + 0.5 = 4/3 slower)
    (3, 0.25, round(C * 0.25 / (3 * 1.75))),   # U + S/3 = 5/6 of a token -> U + S/2 = 7/8: loses C/21

    (2, 0.0, 1),                           # nothing split: the compile costs core 0 ~nothing (floor 1)
])
def test_compile_cost_arithmetic(cores, split_share, cost):
    assert jit.compile_cost(_info(cores, split_share), {})[0] == cost


def test_the_trigger_comes_earlier_with_a_spare_core():
    one = tiered_decision(_info(1), {"JIT_COMPILE_CYCLES": "6000"})
    two = tiered_decision(_info(2, 0.5), {"JIT_COMPILE_CYCLES": "6000"})
    assert one.ladder == two.ladder == ["O0", "O2", "O3", "O3@host"]
    assert one.cycles[:-1] == two.cycles[:-1] and one.calls == two.calls
    assert one.cycles[-1] == 6000 and two.cycles[-1] == 1500        # 6000 * 0.5 / 2
    # The ski-rental decision differs as predicted: a layer that spends 3000 cycles at its last
    # ahead-of-time tier over the whole run is compiled with a spare core, never inline.
    spent = 3000
    assert two.cycles[-1] <= spent < one.cycles[-1]
    with pytest.raises(BareflowError, match=r"JIT_COMPILE_CYCLES='x': expected an integer in 1\.\.10\^15"):
        tiered_decision(_info(2), {"JIT_COMPILE_CYCLES": "x"})


def test_split_share_is_the_split_layers_work_share(monkeypatch):
    monkeypatch.setattr(builtin, "BUILTIN_PLUGINS", ["bareflow.policy.builtin"])
    rows = layer_infos({"n_layers": 5, "seq_len": 512}, stories_costs(), 256, cores=2)
    share = sum(r.token_share for r in rows if r.name in SPLIT_LAYERS)
    assert all(r.split_share == pytest.approx(share) for r in rows)
    assert 0.9 < share < 1.0                  # embed, rmsnorm, rope and sampler are a few per cent
    # Through the plugin manager, as the build asks: every layer's run-time rung, 1 core vs 2.
    pm = load_plugins({}, entry_points=False, environ={})
    for_cores = {}
    for cores in (1, 2):
        infos = [dataclasses.replace(r, cores=cores, jit="llvm") for r in rows]
        for_cores[cores] = decide_all(pm, "tiered", infos, {})
    for name in LAYER_NAMES:
        inline, spare = for_cores[1][name], for_cores[2][name]
        assert inline.ladder[-1] == spare.ladder[-1] == "O3@host", name
        assert inline.cycles[-1] == C and spare.cycles[-1] == round(C * share / 2), name

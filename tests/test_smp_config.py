"""CORES and SMP: the build's side of every-core runs (docs/smp.md, docs/build.md)."""
import pytest

from bareflow.boot import qemu
from bareflow.errors import BareflowError
from bareflow.image import bootconfig
from bareflow.policy import infos


def test_cores_is_written_to_the_boot_config():
    assert b"\ncores = all\n" in bootconfig.render({}, 256)
    assert b"\ncores = 3\n" in bootconfig.render({"cores": "3"}, 256)
    assert bootconfig.check_cores(" 64 ") == "64"


@pytest.mark.parametrize("bad", ["0", "65", "two", "-1", ""])
def test_bad_cores_names_the_variable(bad):
    with pytest.raises(BareflowError, match="CORES="):
        bootconfig.check_cores(bad)


def test_smp_arguments():
    assert qemu.smp_args("1") == ["-smp", "1"]
    args = qemu.smp_args("4")
    assert args[:2] == ["-smp", "4"] and args[2:] in ([], ["-accel", "tcg,thread=multi"])
    for bad in ("0", "65", "x"):
        with pytest.raises(BareflowError, match=r"SMP='.*': expected an integer in 1\.\.64 \(virtual CPUs\)"):
            qemu.smp_args(bad)


def test_policies_are_told_the_core_count_and_which_layers_split():
    costs = {name: (10, 10, 1) for name in infos.LAYER_NAMES}
    costs.update(rmsnorm=(10, 10, 3), qkv=(10, 10, 1))
    got = {i.name: i for i in infos.layer_infos(None, costs, 4, cores=3)}
    assert all(i.cores == 3 for i in got.values())
    assert {n for n, i in got.items() if i.split} == {"qkv", "attn", "attnout", "ffn", "classify"}


def _synthetic_infos(cores=0, steps=64):
    import dataclasses
    from bareflow.model import checkpoint, synthetic
    config = dataclasses.replace(synthetic.CONFIG, vocab_size=synthetic.build_tokenizer().vocab_size)
    return {i.name: i for i in infos.layer_infos(config, checkpoint.layer_costs(config, (steps + 1) // 2), steps,
                                                 cores=cores)}


def test_split_layers_too_small_for_the_barrier_stay_on_one_core():
    from bareflow.policy import builtin, cores
    got = _synthetic_infos()
    caps = {n: cores.max_cores(i, {})[0] for n, i in got.items()}
    # The synthetic model's qkv (36864 units ~ 2600 cycles) and attnout cannot pay 2 x 1500 cycles.
    assert caps == {"embed": 0, "rmsnorm": 0, "qkv": 1, "rope": 0, "attn": 4, "attnout": 1, "ffn": 3,
                    "classify": 3, "sampler": 0}
    assert builtin.tiered_decision(got["qkv"], {}).max_cores == 1
    # n cores are allowed while n(n-1) <= work cycles / SPLIT_CYCLES; a cheaper barrier allows more.
    assert cores.max_cores(got["ffn"], {"SPLIT_CYCLES": "100"})[0] == 12
    assert cores.max_cores(got["qkv"], {"SPLIT_CYCLES": "0"})[0] == 0            # cap off
    # A cap at or above the cores the build knows is no cap; CORES=1 splits nothing.
    assert cores.max_cores(_synthetic_infos(cores=2)["ffn"], {})[0] == 0
    assert cores.max_cores(_synthetic_infos(cores=2)["qkv"], {})[0] == 1
    assert cores.max_cores(_synthetic_infos(cores=1)["qkv"], {})[0] == 0
    for bad in ("-1", "x", str(10**9 + 1)):
        with pytest.raises(BareflowError, match="SPLIT_CYCLES="):
            cores.split_cycles({"SPLIT_CYCLES": bad})


def test_the_cap_reaches_the_policy_table(default_build):
    from bareflow.policy import table
    decisions = table.decode_levels((default_build.dir / "gen" / "POLICY.TBL").read_bytes())["x86-64"]
    assert {n: d.max_cores for n, d in decisions.items()} == {
        "embed": 0, "rmsnorm": 0, "qkv": 1, "rope": 0, "attn": 3, "attnout": 1, "ffn": 3, "classify": 3, "sampler": 0}
    assert "[preload, at most 1 core]" in default_build.log

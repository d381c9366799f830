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
        with pytest.raises(BareflowError, match=r"SMP='.*': expected a number of virtual CPUs, 1\.\.64"):
            qemu.smp_args(bad)


def test_policies_are_told_the_core_count_and_which_layers_split():
    costs = {name: (10, 10, 1) for name in infos.LAYER_NAMES}
    costs.update(rmsnorm=(10, 10, 3), qkv=(10, 10, 1))
    got = {i.name: i for i in infos.layer_infos(None, costs, 4, cores=3)}
    assert all(i.cores == 3 for i in got.values())
    assert {n for n, i in got.items() if i.split} == {"qkv", "attn", "attnout", "ffn", "classify"}

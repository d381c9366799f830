"""The built image really boots and really runs: tokens against the numpy reference, tier
timelines against the policy table, on both boot paths and on the hosted build."""
import pytest

from bareflow.model import layers

from bareflow.policy import table as policytable
from buildutil import QEMU_SUCCESS, hosted, image_file, qemu, reference_tokens, result


def _check_timeline(run, table, positions, n_layers):
    """Every layer's tier changes follow its ladder and thresholds from the policy table."""
    generated = len(run["tokens"])
    per_token = layers.calls_per_token(n_layers)
    for name, entry in table.items():
        layer = run["layers"][name]
        changes = layer["changes"]
        assert len(changes) <= len(entry.ladder) - 1, name
        made = 0
        for i, change in enumerate(changes):
            assert (change["from"], change["to"]) == (entry.ladder[i], entry.ladder[i + 1]), name
            at_tier = layer["calls"][int(entry.ladder[i][1])]
            assert change["call"] == made + at_tier, name
            if entry.calls[i] and not entry.cycles[i]:
                assert at_tier == entry.calls[i], (name, i)
            elif entry.calls[i]:
                assert at_tier <= entry.calls[i], (name, i)
            made += at_tier
        assert layer["tier"] == entry.ladder[len(changes)], name
        expected_calls = generated if name == "sampler" else per_token[name] * positions
        assert sum(layer["calls"]) == expected_calls, name
        used = {f"O{t}" for t, calls in enumerate(layer["calls"]) if calls}
        assert used <= set(entry.ladder), name


@pytest.fixture(scope="module")
def synthetic_reference(default_build):
    return reference_tokens(default_build.dir / "model" / "SYNTH.BIN", default_build.dir / "model" / "SYNTHTOK.BIN")


def _copy(build, directory):
    """Boot a copy: the kernel writes /PROFILE.BIN back into the image it booted from."""
    image = directory / f"{build.dir.name}.img"
    image.write_bytes(build.image.read_bytes())
    return image


@pytest.fixture(scope="module")
def bios_run(default_build, tmp_path_factory):
    status, out = qemu(_copy(default_build, tmp_path_factory.mktemp("bios")))
    assert status == QEMU_SUCCESS, out[-3000:]
    return result(out), out


def test_bios_boot_matches_reference_and_policy(default_build, bios_run, synthetic_reference):
    run, out = bios_run
    assert "SYSLINUX" in out and "bareflow" in out
    assert run["prompt_tokens"] == synthetic_reference["prompt_tokens"]
    assert run["tokens"] == synthetic_reference["tokens"]
    assert run["text"] == synthetic_reference["text"]
    assert run["text"] in out                          # streamed before the result line
    assert run["tokens_per_second"] > 0 and run["profiling_overhead_cycles"] > 0
    table = policytable.decode(image_file(default_build.image, "/POLICY.TBL"))
    positions = len(run["prompt_tokens"]) - 1 + len(run["tokens"])
    _check_timeline(run, table, positions, n_layers=4)
    assert any(layer["changes"] for layer in run["layers"].values())


def test_direct_kernel_boot_gives_the_same_tokens(default_build, bios_run, tmp_path):
    status, out = qemu(_copy(default_build, tmp_path), kernel=default_build.kernel)
    assert status == QEMU_SUCCESS, out[-3000:]
    assert "SYSLINUX" not in out
    assert result(out)["tokens"] == bios_run[0]["tokens"]


def test_hosted_build_gives_the_same_tokens(default_build, bios_run, tmp_path):
    image = _copy(default_build, tmp_path)
    status, out = hosted(default_build.hosted, image)
    assert status == 0, out[-3000:]
    run = result(out)
    assert run["tokens"] == bios_run[0]["tokens"]
    table = policytable.decode(image_file(image, "/POLICY.TBL"))
    _check_timeline(run, table, len(run["prompt_tokens"]) - 1 + len(run["tokens"]), n_layers=4)


def test_fixed_o0_and_default_policy_differ_in_timeline_not_tokens(fixed_o0_build, bios_run, tmp_path):
    status, out = qemu(_copy(fixed_o0_build, tmp_path))
    assert status == QEMU_SUCCESS, out[-3000:]
    run = result(out)
    assert run["tokens"] == bios_run[0]["tokens"]
    for name, layer in run["layers"].items():
        assert layer["changes"] == [] and layer["tier"] == "O0", name
        assert layer["calls"][1:] == [0, 0, 0], name
    assert any(layer["changes"] for layer in bios_run[0]["layers"].values())


@pytest.mark.qemu
def test_stories260k_in_qemu_and_hosted_match_reference(stories_build, tmp_path):
    from buildutil import stories
    model, tok = stories()
    expected = reference_tokens(model, tok)
    status, out = qemu(_copy(stories_build, tmp_path))
    assert status == QEMU_SUCCESS, out[-3000:]
    run = result(out)
    assert run["tokens"] == expected["tokens"]
    assert run["text"] == expected["text"]
    status, out = hosted(stories_build.hosted, _copy(stories_build, tmp_path))
    assert status == 0 and result(out)["tokens"] == expected["tokens"]
    table = policytable.decode(image_file(stories_build.image, "/POLICY.TBL"))
    _check_timeline(run, table, len(run["prompt_tokens"]) - 1 + len(run["tokens"]), n_layers=5)


def test_v3_image_runs_on_a_v3_cpu_and_is_refused_clearly_elsewhere(bios_run, tmp_path):
    from buildutil import scons
    scons(tmp_path / "b", "image", "ISA=x86-64-v3")
    image = tmp_path / "b" / "bareflow.img"
    status, out = qemu(_copy_path(image, tmp_path / "max.img"), cpu="max")
    assert status == QEMU_SUCCESS, out[-3000:]
    run = result(out)
    assert run["isa"] == "x86-64-v3"
    assert run["tokens"] == bios_run[0]["tokens"]      # FMA contraction is off: same bits as baseline
    status, out = qemu(_copy_path(image, tmp_path / "old.img"), cpu="qemu64")
    assert status == (1 << 1) | 1
    panic = [line for line in out.splitlines() if line.startswith("BAREFLOW-PANIC")]
    assert panic and "x86-64-v3" in panic[0], out[-2000:]


def _copy_path(src, dest):
    dest.write_bytes(src.read_bytes())
    return dest

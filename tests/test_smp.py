"""Every core: the booted kernel starts the application processors (SeaBIOS and OVMF, -smp 1/2/4),
splits the layers across them and still produces the reference tokens; a CPU that never answers
and a corrupt MADT are reported and the run completes; the hosted build splits the same way on
threads.  The simulated faults use the test-only `smp_test` key of /BAREFLOW.CFG (docs/smp.md):
`phantom-cpu` adds an APIC id no CPU has to the list read from the MADT, `corrupt-madt` zeroes the
first entry's length in the kernel's copy of the MADT (checksum fixed up, so the entry check must
catch it)."""
import os
import subprocess

import pytest

from buildutil import PARTITION_OFFSET, QEMU_SUCCESS, hosted, image_file, need, qemu, reference_tokens, result, tool

STEPS = 8
MTTCG = ["-accel", "tcg,thread=multi"]


def _image(build, directory, name, **keys):
    """A copy of the build's image whose /BAREFLOW.CFG asks for STEPS positions plus `keys`."""
    need("mcopy")
    image = directory / f"{name}.img"
    image.write_bytes(build.image.read_bytes())
    cfg = directory / f"{name}.cfg"
    lines = ["prompt = Once upon a time", f"steps = {STEPS}"] + [f"{k} = {v}" for k, v in keys.items()]
    cfg.write_text("\n".join(lines) + "\n")
    subprocess.run([tool("mcopy"), "-o", "-i", f"{image}@@{PARTITION_OFFSET}", str(cfg), "::/BAREFLOW.CFG"],
                   check=True, capture_output=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    return image


def _boot(image, smp, firmware="bios"):
    status, out = qemu(image, firmware=firmware, extra=["-smp", str(smp)] + (MTTCG if smp > 1 else []))
    assert status == QEMU_SUCCESS, out[-3000:]
    return result(out), out


@pytest.fixture(scope="module")
def reference(default_build):
    return reference_tokens(default_build.dir / "model" / "SYNTH.BIN", default_build.dir / "model" / "SYNTHTOK.BIN",
                            steps=STEPS)["tokens"]


# Both small models boot with 1, 2 and 4 virtual CPUs on both firmwares in every test run (measured
# on this 2-core host: 1.5-2.6 s per SeaBIOS boot, 10-12 s per OVMF boot; SmolLM2's core counts are
# in tests/test_models_smollm2.py).
CORE_COUNTS = [(firmware, smp) for firmware in ("bios", "uefi") for smp in (1, 2, 4)]


@pytest.mark.parametrize("firmware,smp", CORE_COUNTS)
def test_every_core_is_started_and_used_with_identical_tokens(default_build, reference, tmp_path, firmware, smp):
    run, out = _boot(_image(default_build, tmp_path, "all"), smp, firmware)
    assert run["tokens"] == reference
    assert run["cores"]["found"] == run["cores"]["started"] == run["cores"]["used"] == smp
    busy = run["cores"]["busy_ms"]
    assert len(busy) == smp and busy[0] > 0
    if smp > 1:
        assert f"bareflow-kernel: cores: MADT lists {smp}, running {smp}" in out
        # APs ran chunks.  Core 0 runs a chunk itself when its AP has not claimed it by the time
        # core 0 finished its own, so on a busy host one AP may get few or none; over the ~40 splits
        # of every position the spinning APs claim some.  An AP's first chunk comes seconds after
        # it started, long after it parked (HLT, docs/smp.md "Idle cores"): this also shows the
        # NMI wake-up works.
        assert sum(busy[1:]) > 0
        # An AP waits seconds for its first chunk, so it parks (platform_wait reports the HLT); on
        # a host with fewer CPUs than vCPUs one AP's thread may hardly run, so only some AP must.
        assert len(run["cores"]["parks"]) == smp and any(p > 0 for p in run["cores"]["parks"][1:]), run["cores"]
        for name in ("qkv", "attn", "attnout", "ffn", "classify"):
            assert len(run["layers"][name]["core_cycles"]) == smp and run["layers"][name]["core_cycles"][0], name
        assert run["layers"]["rmsnorm"]["core_cycles"] == []
    if firmware == "uefi":
        assert "bareflow-uefi: ACPI RSDP at" in out


def test_cores_1_keeps_the_single_core_run(default_build, reference, tmp_path):
    run, out = _boot(_image(default_build, tmp_path, "one", cores=1), 2)
    assert run["tokens"] == reference
    assert (run["cores"]["found"], run["cores"]["started"], run["cores"]["used"]) == (2, 1, 1)
    assert "bareflow-kernel: cores:" not in out                       # no AP was sent an IPI


def test_a_cpu_that_never_answers_is_left_out(default_build, reference, tmp_path):
    run, out = _boot(_image(default_build, tmp_path, "phantom", smp_test="phantom-cpu"), 2)
    assert "smp_test=phantom-cpu: added APIC id 2" in out
    assert "bareflow-kernel: cpu with APIC id 2: no answer to INIT-SIPI-SIPI within 500 ms; left out" in out
    assert (run["cores"]["found"], run["cores"]["started"], run["cores"]["used"]) == (3, 2, 2)
    assert run["tokens"] == reference


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_corrupt_madt_gives_a_named_message_and_one_core(default_build, reference, tmp_path, firmware):
    run, out = _boot(_image(default_build, tmp_path, "corrupt", smp_test="corrupt-madt"), 2, firmware)
    assert ("bareflow-kernel: acpi: MADT entry 0 at offset 44 (type 0) has length 0, which is too short or "
            "runs past the table; running on one core") in out
    assert (run["cores"]["started"], run["cores"]["used"]) == (1, 1)
    assert run["tokens"] == reference


def test_an_ap_stack_overflow_hits_its_guard_page(default_build, tmp_path):
    """smp_test=ap-stack-overflow: AP 1 recurses before taking work; the unmapped page below its
    stack turns the overflow into a named page fault instead of corrupting the arena."""
    image = _image(default_build, tmp_path, "overflow", smp_test="ap-stack-overflow")
    status, out = qemu(image, extra=["-smp", "2"] + MTTCG)
    assert status != QEMU_SUCCESS
    assert ("BAREFLOW-PANIC: CPU exception #PF page fault (vector 14) error=0x" in out and
            " cpu 1: kernel stack overflow (the access hit the guard page below the core's stack)" in out), out[-2000:]
    assert "BAREFLOW-RESULT" not in out


def test_bad_cores_and_smp_test_values_are_refused(default_build, tmp_path):
    for keys, message in [({"cores": 0}, "BAREFLOW.CFG line 3: cores = '0' is neither 'all' nor an integer in 1..64"),
                          ({"cores": "two"}, "BAREFLOW.CFG line 3: cores = 'two' is neither"),
                          ({"smp_test": "boom"},
                           "BAREFLOW.CFG line 3: smp_test = 'boom' is not none, phantom-cpu, corrupt-madt or "
                           "ap-stack-overflow")]:
        status, out = hosted(default_build.hosted, _image(default_build, tmp_path, "bad", **keys))
        assert status == 1 and f"BAREFLOW-PANIC: {message}" in out, out[-2000:]


def test_hosted_threads_give_identical_tokens(default_build, reference, tmp_path):
    phases = set()
    for cores in (1, 2, 3):
        image = _image(default_build, tmp_path, f"h{cores}", cores=cores)
        status, out = hosted(default_build.hosted, image)
        assert status == 0, out[-3000:]
        run = result(out)
        assert run["tokens"] == reference, cores
        assert run["cores"]["started"] == run["cores"]["used"] == cores
        assert len(run["layers"]["ffn"]["core_cycles"]) == cores
        # The tiered policy keeps qkv on one core (max_cores 1: too little work per call for the
        # barrier, bareflow/policy/cores.py); the tokens above are the same either way.
        assert run["layers"]["qkv"]["core_cycles"][1:] == [0] * (cores - 1)
        phases.add(_split_counters_add_up(run["cores"], cores))
        _profile_matches_result(image_file(image, "/PROFILE.BIN"), run)
    assert len(phases - {None}) == 1, phases      # the same layers split on 2 and 3 cores


def _split_counters_add_up(k, cores):
    """The result line's split counters (docs/result-line.md): core 0 runs its own chunk of every
    split phase plus the `stolen` pieces of workers' chunks; the workers the other pieces."""
    for key in ("pieces", "parks", "joined", "woken", "claim_ms", "wake_ms"):
        assert len(k[key]) == cores, (key, k)
    if cores == 1:
        assert k["pieces"] == [0] and k["stolen"] == 0 and k["wait_ms"] == 0, k
        return
    own = k["pieces"][0] - k["stolen"]          # split phases, one own chunk each
    assert own > 0 and k["stolen"] >= 0, k
    assert k["stolen"] + sum(k["pieces"][1:]) >= own * (cores - 1), k   # >= 1 piece per worker chunk
    assert k["parks"][0] == k["joined"][0] == k["woken"][0] == 0 and k["claim_ms"][0] == k["wake_ms"][0] == 0, k
    for c in range(1, cores):
        assert k["woken"][c] <= k["joined"][c] <= min(k["pieces"][c], own), k
        assert (k["joined"][c] > 0) == (k["pieces"][c] > 0), k
        assert 0 <= k["wake_ms"][c] <= k["claim_ms"][c] and (k["joined"][c] or k["claim_ms"][c] == 0), k
    return own


def _profile_matches_result(data, run):
    """/PROFILE.BIN version 3 carries the result line's per-core figures (docs/profile-file.md)."""
    from bareflow.policy import profile
    prof = profile.decode_profile(data)
    assert data[4] == profile.VERSION_CORES
    k, cps = prof.cores, run["cycles_per_second"]
    assert (k.found, k.started, k.used) == tuple(run["cores"][key] for key in ("found", "started", "used"))
    assert k.recorded == k.used
    for cycles, ms in zip(k.busy_cycles, run["cores"]["busy_ms"], strict=True):
        assert abs(cycles * 1000 / cps - ms) <= 0.0005 + 1e-9 * ms
    for name, stats in run["layers"].items():
        assert list(prof.layers[name].core_cycles) == stats["core_cycles"], name
        assert list(prof.layers[name].calls) == stats["calls"], name
    # Core 0's share of a split layer is inside its whole-call time; the busy total is the sum.
    split = [lp for lp in prof.layers.values() if lp.core_cycles]
    assert {lp.name for lp in split} == {"qkv", "attn", "attnout", "ffn", "classify"}
    for c in range(k.used):
        assert k.busy_cycles[c] == sum(lp.core_cycles[c] for lp in split)


@pytest.mark.parametrize("firmware,smp", CORE_COUNTS)
def test_stories260k_on_every_core_count_matches_the_reference(stories_build, tmp_path, firmware, smp):
    from buildutil import stories
    model, tok = stories()
    want = reference_tokens(model, tok, steps=STEPS)["tokens"]
    run, _ = _boot(_image(stories_build, tmp_path, "stories"), smp, firmware)
    assert run["tokens"] == want
    # Every core found was started and used, and the APs ran chunks (woken from their park).
    assert run["cores"]["found"] == run["cores"]["started"] == run["cores"]["used"] == smp
    busy = run["cores"]["busy_ms"]
    assert len(busy) == smp and busy[0] > 0 and (smp == 1 or sum(busy[1:]) > 0), busy
    if (firmware, smp) == ("bios", 2):
        status, out = hosted(stories_build.hosted, _image(stories_build, tmp_path, "stories-h", cores=2))
        assert status == 0 and result(out)["tokens"] == want

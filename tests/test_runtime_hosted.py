"""The portable runtime, run natively: bareflow-hosted on disk images the tests make.

The hosted program is built here from src/runtime, src/hosted and src/libc with the project's
freestanding flags; the layer modules are the real modules/*.c compiled through the project's
bitcode, tier and BFMD steps.  Images are made with mkfs.fat and mtools (an independent FAT16
writer), the policy table with a small encoder written from docs/policy-table.md.  The other
test_runtime_* files import the helpers below.
"""
import functools
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import fuzz_campaign  # tools/ (conftest puts it on the path)
import mtools_image  # tools/

from bareflow.bitcode import toolchain
from bareflow.libc import selection as libc
from bareflow.model import reference, synthetic, tokenizer_v2
from bareflow.modules import modformat

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LAYERS = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]
TIERS = ["O0", "O1", "O2", "O3"]
RUN_TIMEOUT = 60
RESULT_KEYS = ["prompt", "prompt_tokens", "tokens", "text", "steps", "temperature", "seed",
               "tokens_per_second", "cycles_per_second", "isa", "layers", "cores", "profiling_overhead_cycles",
               "boot_cycles"]
PRELOAD, STOP_PROFILING = 1, 2

needs_mtools = pytest.mark.skipif(not (shutil.which("mkfs.fat") or os.path.exists("/usr/sbin/mkfs.fat"))
                                  or not shutil.which("mcopy"),
                                  reason="mkfs.fat and mtools (Debian: dosfstools, mtools) are needed to make images")
needs_data = pytest.mark.skipif(not (DATA / "stories260K.bin").exists() or not (DATA / "tok512.bin").exists(),
                                reason=f"{DATA}/stories260K.bin and tok512.bin are absent")


# ---------------------------------------------------------------- building

def _cc(args):
    src, obj = args
    cmd = toolchain.CC + toolchain.FREESTANDING_CFLAGS + [
        "-O2", f"-I{REPO}/src/include", f"-I{REPO}/src/libc/include", "-c", str(src), "-o", str(obj)]
    toolchain.run(cmd, what=f"compiling {src}")
    return obj


@functools.lru_cache(maxsize=None)
def module_files():
    """{"/MODULES/EMBED.O0": bytes, ...}: every layer at O0, O1 and O2, baseline ISA."""
    return fuzz_campaign.build_module_files(Path(tempfile.mkdtemp(prefix="bf-rt-modules-")))


@functools.lru_cache(maxsize=None)
def hosted_program():
    """Build bareflow-hosted the way docs/runtime.md describes; exports = what the modules import."""
    work = Path(tempfile.mkdtemp(prefix="bf-rt-hosted-"))
    imports = sorted({name for data in module_files().values() for name in modformat.parse(data).imports})
    (work / "exports.c").write_text(libc.exports_source(imports))
    sources = sorted((REPO / "src/runtime").glob("*.c")) + sorted((REPO / "src/hosted").glob("*.[cS]")) + \
        sorted((REPO / "src/jit/none").glob("*.c")) + sorted((REPO / "src/libc").glob("*/*.c")) + [work / "exports.c"]
    jobs = [(src, work / f"{i:02d}_{src.stem}.o") for i, src in enumerate(sources)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        objs = list(pool.map(_cc, jobs))
    exe = work / "bareflow-hosted"
    toolchain.run(toolchain.LD_LLD + ["-static", "-e", "_start", "--build-id=none", "-o", str(exe)] +
                  [str(o) for o in objs], what="linking bareflow-hosted")
    return exe


@functools.lru_cache(maxsize=None)
def synthetic_model():
    work = Path(tempfile.mkdtemp(prefix="bf-rt-model-"))
    synthetic.write(work / "MODEL.BIN", work / "TOKENIZR.BIN")
    return work / "MODEL.BIN", work / "TOKENIZR.BIN"


# ---------------------------------------------------------------- on-disk formats

def policy_table(entries):
    """BFPT bytes for [(layer, ladder ["O0", "O2"], calls [..], cycles [..], flags), ...]."""
    body = b""
    for name, ladder, calls, cycles, flags in entries:
        codes = [TIERS.index(t) for t in ladder] + [0xFF] * (4 - len(ladder))
        calls = list(calls) + [0] * (3 - len(calls))
        cycles = list(cycles) + [0] * (3 - len(cycles))
        body += struct.pack("<16sBBH4B3I4s3Q", name.encode(), len(ladder), flags, 0, *codes, *calls,
                            b"\0" * 4, *cycles)
    head = struct.pack("<4sHHHHI", b"BFPT", 1, 16, len(entries), 64, 0)
    crc = zlib.crc32(head + body)
    return head[:12] + struct.pack("<I", crc) + body


def simple_policy(tier="O0"):
    return [(name, [tier], [], [], 0) for name in LAYERS]


def config(prompt="Once upon a time", steps=24, temperature="0", topp="0.9", seed=42):
    return (f"# test configuration\nprompt = {prompt}\nsteps = {steps}\ntemperature = {temperature}\n"
            f"topp = {topp}\nseed = {seed}\n").encode()


def recrc_module(data):
    data = bytearray(data)
    data[60:64] = b"\0\0\0\0"
    data[60:64] = struct.pack("<I", zlib.crc32(bytes(data)))
    return bytes(data)


def base_files(policy=None, cfg=None, model=None):
    """Everything a good run needs, with the synthetic model unless `model` = (model, tokenizer)."""
    m, t = model or synthetic_model()
    files = dict(module_files())
    files.update({
        "/BAREFLOW.CFG": cfg if cfg is not None else config(),
        "/POLICY.TBL": policy_table(policy or simple_policy()),
        "/MODEL.BIN": Path(m).read_bytes(),
        "/TOKENIZR.BIN": tokenizer_file(t),
        "/PROFILE.BIN": profile_bytes_empty(),
    })
    return files


@functools.lru_cache(maxsize=None)
def tokenizer_file(path):
    """TOKENIZR.BIN v2 bytes for a llama2.c tokenizer.bin, converted as the build does."""
    return tokenizer_v2.encode(tokenizer_v2.load_any(path))


def profile_bytes_empty():
    data = bytearray(4096)
    data[0:4] = b"BFPR"
    data[4:6] = struct.pack("<H", 1)
    data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[:32])))
    return bytes(data)


PART_LBA = 2048


def make_image(path, files, *, mbr=True, part_kib=16384, cluster_sectors=1):
    """An MBR disk with one FAT16 partition (type 0x06) at PART_LBA, or a superfloppy."""
    return mtools_image.write_image(path, files, part_lba=PART_LBA if mbr else 0, part_kib=part_kib,
                                    cluster_sectors=cluster_sectors)


def read_back(image, name, *, mbr=True):
    """A file's bytes from an image, read with mtools."""
    offset = PART_LBA * 512 if mbr else 0
    return subprocess.run(["mtype", "-i", f"{image}@@{offset}", "::" + name], check=True,
                          capture_output=True).stdout


# ---------------------------------------------------------------- running

class Run:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", errors="replace")
        self.lines = self.out.splitlines()

    @property
    def result(self):
        assert self.lines and self.lines[-1].startswith("BAREFLOW-RESULT "), self.out[-2000:]
        return json.loads(self.lines[-1][len("BAREFLOW-RESULT "):])

    @property
    def panic(self):
        assert self.lines and self.lines[-1].startswith("BAREFLOW-PANIC: "), self.out[-2000:]
        return self.lines[-1][len("BAREFLOW-PANIC: "):]


def run_image(image):
    proc = subprocess.run([str(hosted_program()), str(image)], capture_output=True, timeout=RUN_TIMEOUT)
    return Run(proc)


def run_files(tmp_path, files, **kw):
    return run_image(make_image(tmp_path / "disk.img", files, **kw))


def expect_panic(tmp_path, files, fragment, **kw):
    run = run_files(tmp_path, files, **kw)
    assert run.code == 1, run.out[-2000:]
    assert fragment in run.panic, run.panic
    return run


# ---------------------------------------------------------------- tests

@needs_mtools
def test_greedy_run_matches_reference_and_counts_calls(tmp_path):
    m, t = synthetic_model()
    run = run_files(tmp_path, base_files(cfg=config(steps=30)))
    assert run.code == 0, run.out
    r = run.result
    assert list(r) == RESULT_KEYS
    ref = reference.generate(m, t, "Once upon a time", 30)
    assert r["prompt_tokens"] == ref["prompt_tokens"]
    assert r["tokens"] == ref["tokens"]
    assert r["text"] == ref["text"]
    # The pieces were streamed to the console before the result line.
    assert ref["text"] in run.out
    positions = len(r["prompt_tokens"]) - 1 + len(r["tokens"])
    n_layers = synthetic.CONFIG.n_layers
    expected = {"embed": 1, "rmsnorm": 2 * n_layers + 1, "qkv": n_layers, "rope": n_layers, "attn": n_layers,
                "attnout": n_layers, "ffn": n_layers, "classify": 1}
    for name, per_position in expected.items():
        assert r["layers"][name]["calls"] == [per_position * positions, 0, 0, 0], name
    assert r["layers"]["sampler"]["calls"] == [len(r["tokens"]), 0, 0, 0]
    assert all(layer["tier"] == "O0" and layer["changes"] == [] for layer in r["layers"].values())
    assert r["steps"] == 30 and r["temperature"] == 0 and r["seed"] == 42 and r["isa"] == "x86-64"
    assert r["cycles_per_second"] > 10**8 and r["tokens_per_second"] > 0
    assert 0 < r["boot_cycles"] and 0 <= r["profiling_overhead_cycles"] < 10000


@needs_mtools
def test_version_2_table_on_a_jit_none_kernel_reports_the_run_time_tier_and_goes_on(tmp_path):
    """A version 2 policy table (isa byte 18, max_cores byte 19 and a run-time tier code 0x13 in
    one entry) is read by a JIT=none kernel: the O3@host compile fails with a report naming the
    layer, the layer stays at its module-file tier, and the tokens are the reference's."""
    from bareflow.policy import table as policy_table_mod
    from bareflow.policy.api import Decision
    m, t = synthetic_model()
    decisions = {name: Decision(["O0"]) for name in LAYERS}
    decisions["ffn"] = Decision(["O0", "O3@host"], calls=[2], max_cores=1)
    table = policy_table_mod.encode(decisions, LAYERS)
    ffn = 16 + 64 * LAYERS.index("ffn")
    assert struct.unpack_from("<H", table, 4)[0] == 2 and table[ffn + 19] == 1 and table[ffn + 21] == 0x13
    files = base_files(cfg=config(steps=12))
    files["/POLICY.TBL"] = table
    run = run_files(tmp_path, files)
    assert run.code == 0, run.out
    assert "bareflow: jit: layer ffn: O3@host failed at call 2, stays at O0: " in run.out, run.out
    r = run.result
    assert r["tokens"] == reference.generate(m, t, "Once upon a time", 12)["tokens"]
    assert r["layers"]["ffn"]["tier"] == "O0" and r["layers"]["ffn"]["changes"] == []
    [compile_] = r["jit"]["compiles"]
    assert (compile_["layer"], compile_["tier"], compile_["ok"]) == ("ffn", "O3@host", False)
    assert r["jit"]["backend"] == "none"


@needs_mtools
@needs_data
@pytest.mark.parametrize("temperature, topp, seed", [("0", "0.9", 42), ("0.8", "0.9", 7), ("1", "0.95", 0)])
def test_stories260k_matches_reference(tmp_path, temperature, topp, seed):
    model = (DATA / "stories260K.bin", DATA / "tok512.bin")
    cfg = config(steps=64, temperature=temperature, topp=topp, seed=seed)
    run = run_files(tmp_path, base_files(cfg=cfg, model=model, policy=simple_policy("O2")))
    assert run.code == 0, run.out
    r = run.result
    ref = reference.generate(*model, "Once upon a time", 64, float(temperature), float(topp), seed)
    assert r["tokens"] == ref["tokens"]
    assert r["text"] == ref["text"]
    assert r["temperature"] == float(temperature) and r["seed"] == seed
    if temperature == "0":
        assert r["text"].startswith(", there was a little girl named Lily")


@needs_mtools
def test_tier_promotion_preload_on_demand_and_stop_profiling(tmp_path):
    policy = simple_policy()
    policy[LAYERS.index("embed")] = ("embed", ["O0", "O2"], [3], [], 0)                 # on demand
    policy[LAYERS.index("rmsnorm")] = ("rmsnorm", ["O0", "O1", "O2"], [5, 7], [], PRELOAD)
    policy[LAYERS.index("attn")] = ("attn", ["O0", "O2"], [0], [1], STOP_PROFILING)      # cycle trigger
    policy[LAYERS.index("sampler")] = ("sampler", ["O1"], [], [], STOP_PROFILING)
    run = run_files(tmp_path, base_files(policy=policy, cfg=config(steps=12)))
    assert run.code == 0, run.out
    layers = run.result["layers"]
    assert layers["embed"]["calls"] == [3, 0, 9, 0]
    assert layers["embed"]["changes"] == [{"call": 3, "from": "O0", "to": "O2"}]
    assert layers["embed"]["tier"] == "O2" and layers["embed"]["cycles"][2] > 0
    assert layers["rmsnorm"]["calls"][:3] == [5, 7, 12 * 9 - 12]
    assert layers["rmsnorm"]["changes"] == [{"call": 5, "from": "O0", "to": "O1"},
                                            {"call": 12, "from": "O1", "to": "O2"}]
    # One call's cycles reach the 1-cycle trigger; at the last tier the clock is no longer read.
    assert layers["attn"]["calls"] == [1, 0, 12 * 4 - 1, 0]
    assert layers["attn"]["cycles"][0] > 0 and layers["attn"]["cycles"][2] == 0
    assert layers["sampler"]["tier"] == "O1" and layers["sampler"]["cycles"] == [0, 0, 0, 0]
    assert layers["sampler"]["calls"][1] > 0
    assert "11 loaded at boot, 2 on demand" in run.out


@needs_mtools
def test_profile_written_in_place_matches_result(tmp_path):
    image = make_image(tmp_path / "disk.img", base_files(cfg=config(steps=16)))
    before = image.read_bytes()
    run = run_image(image)
    assert run.code == 0, run.out
    r = run.result
    data = read_back(image, "/PROFILE.BIN")
    assert len(data) == 4096 and data[:4] == b"BFPR"
    version, n_layers, tokens, crc, cps, total = struct.unpack_from("<HHIIQQ", data, 4)
    assert (version, n_layers, tokens) == (3, 9, len(r["tokens"]))
    # Version 3: the cores section follows the entries: header, busy cycles, 5 split-layer rows.
    used = r["cores"]["used"]
    end = 32 + 96 * 9 + 16 + 8 * used + 5 * (8 + 8 * used)
    assert data[32 + 96 * 9:32 + 96 * 9 + 4] == b"BFCC"
    assert crc == zlib.crc32(data[:12] + b"\0" * 4 + data[16:end])
    assert cps == r["cycles_per_second"] and total > 0
    for i, name in enumerate(LAYERS):
        entry = data[32 + 96 * i: 32 + 96 * (i + 1)]
        assert entry[:16].rstrip(b"\0").decode() == name
        assert list(struct.unpack_from("<4Q", entry, 16)) == r["layers"][name]["calls"]
        assert list(struct.unpack_from("<4Q", entry, 48)) == r["layers"][name]["cycles"]
        assert TIERS[entry[80]] == r["layers"][name]["tier"] and entry[81] == len(r["layers"][name]["changes"])
    assert not any(data[end:])
    # Only the profile's own sectors changed: the directory and the FAT are untouched.
    after = image.read_bytes()
    changed = {i // 512 for i in range(0, len(after), 512) if after[i:i + 512] != before[i:i + 512]}
    assert changed and max(changed) - min(changed) < 8
    if shutil.which("fsck.fat") or os.path.exists("/usr/sbin/fsck.fat"):
        part = tmp_path / "part.img"
        part.write_bytes(after[PART_LBA * 512:])
        fsck = shutil.which("fsck.fat") or "/usr/sbin/fsck.fat"
        assert subprocess.run([fsck, "-n", str(part)], capture_output=True).returncode == 0


@needs_mtools
def test_profile_of_wrong_size_is_a_warning(tmp_path):
    files = base_files()
    files["/PROFILE.BIN"] = b"\0" * 100
    run = run_files(tmp_path, files)
    assert run.code == 0
    assert "warning: /PROFILE.BIN not written" in run.out and "100 bytes" in run.out
    assert run.result["tokens"]


@needs_mtools
def test_result_strings_are_escaped_json(tmp_path):
    prompt = 'He said "hi" \\ and {left}'
    run = run_files(tmp_path, base_files(cfg=config(prompt=prompt, steps=20)))
    assert run.code == 0, run.out
    assert run.result["prompt"] == prompt


@needs_mtools
def test_config_number_forms_round_trip(tmp_path):
    """Python's %g writes 1e-05; a leading-dot decimal and the largest seed also parse exactly."""
    cfg = config(steps=20, temperature="1e-05", topp=".5", seed=2**64 - 1)
    run = run_files(tmp_path, base_files(cfg=cfg))
    assert run.code == 0, run.out
    r = run.result
    assert (r["temperature"], r["seed"]) == (1e-05, 2**64 - 1)
    m, t = synthetic_model()
    assert r["tokens"] == reference.generate(m, t, "Once upon a time", 20, 1e-05, 0.5, 2**64 - 1)["tokens"]


@needs_mtools
def test_superfloppy_without_partition_table(tmp_path):
    run = run_files(tmp_path, base_files(cfg=config(steps=10)), mbr=False)
    assert run.code == 0, run.out
    r = run.result
    assert len(r["tokens"]) == 10 - (len(r["prompt_tokens"]) - 1)


@needs_mtools
def test_lowercase_paths_and_crlf_config(tmp_path):
    files = base_files(cfg=config(steps=9).replace(b"\n", b"\r\n"))
    files = {name.lower() if name.startswith("/MODULES/") else name: data for name, data in files.items()}
    run = run_files(tmp_path, files)
    assert run.code == 0, run.out
    assert run.result["steps"] == 9


def test_usage_without_image():
    proc = subprocess.run([str(hosted_program())], capture_output=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 2 and b"usage: bareflow-hosted IMAGE" in proc.stderr


def test_unreadable_image_panics(tmp_path):
    run = run_image(tmp_path / "absent.img")
    assert run.code == 1 and "cannot open image" in run.panic

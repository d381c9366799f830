"""The fuzzer in the project (issue 8): a short smoke run of every target, and the corpus.

tools/fuzz_campaign.py builds the runtime's parsers with gcc's AddressSanitizer and
UndefinedBehaviorSanitizer into a driver of our own (tools/fuzz/), seeds it from real build
outputs generated here (modules, synthetic model, config, policy tables, mkfs.fat images) and
runs mutated inputs.  Here each target runs a few thousand executions (about half a minute in
all) and must end with no sanitizer report and no hang; every input in tests/fuzz-corpus/
(inputs that once found a bug) is replayed.  The long campaign is `python tools/fuzz_campaign.py
--minutes N`.  The build's own readers get the same treatment in Python: mutated inputs may only
raise BareflowError.
"""
import random
import struct
import sys

import pytest

from bareflow.image import bootconfig

from bareflow.modules import modformat

from bareflow.policy import table as policytable

from bareflow.policy import profile
from bareflow.errors import BareflowError
from bareflow.model.checkpoint import read_config
from bareflow.model import tokenizer_v2
from test_runtime_hosted import REPO, base_files, module_files, needs_mtools

sys.path.insert(0, str(REPO / "tools"))
import fuzz_campaign  # noqa: E402

SMOKE = {"config": 8000, "tokenizer": 1500, "model": 1500, "policy": 2000, "module": 8000, "fat16": 150,
         "image": 10}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    missing = fuzz_campaign.missing_tools()
    if missing:
        pytest.skip(f"the fuzzer needs {', '.join(missing)} (Debian: gcc, dosfstools, mtools)")
    work = tmp_path_factory.mktemp("fuzz")
    seeds = fuzz_campaign.prepare_seeds(work, modules=module_files())
    return work, seeds, fuzz_campaign.build(work)


@pytest.mark.parametrize("target", fuzz_campaign.ALL_TARGETS)
def test_smoke_run_finds_nothing(harness, target):
    work, seeds, binaries = harness
    r = fuzz_campaign.run_chunk(binaries, seeds, target, SMOKE[target], rng_seed=12345, timeout=300)
    assert r["crashes"] == 0 and r["hangs"] == 0, r["report"]
    assert r["execs"] == SMOKE[target]
    # The mutations must reach both sides of the parser, or the run proves little.
    assert r["refused"] > 0 and (r["accepted"] > 0 or target == "image"), r


def test_seeds_are_accepted_unmutated(harness):
    """The seed images and files are valid: the harness and the runtime agree on a good run."""
    work, seeds, binaries = harness
    proc = fuzz_campaign.replay(binaries, seeds, "image", [seeds / "image" / "superfloppy.img"])
    assert proc.returncode == 0 and b"accepted" in proc.stdout and b"boot_cycles" in proc.stdout, proc.stdout
    for target in ("config", "tokenizer", "model", "policy", "fat16"):
        files = sorted((seeds / target).iterdir())
        proc = fuzz_campaign.replay(binaries, seeds, target, [f for f in files if not f.name.startswith("corpus-")])
        assert proc.returncode == 0 and b"refused" not in proc.stdout, proc.stdout


def test_corpus_replays_cleanly(harness):
    work, seeds, binaries = harness
    corpus = fuzz_campaign.CORPUS
    inputs = [(d.name, f) for d in sorted(corpus.glob("*")) if d.is_dir() for f in sorted(d.iterdir())]
    if not inputs:
        pytest.skip("tests/fuzz-corpus/ is empty")
    for target, f in inputs:
        proc = fuzz_campaign.replay(binaries, seeds, target, [f])
        assert proc.returncode == 0 and b"REPLAY" in proc.stdout, (f, proc.stderr[-3000:])


# ---- the build's readers, fuzzed in Python: only BareflowError may come out

def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[at] = rng.randrange(256)
        elif op == 1 and at + 4 <= len(data):
            struct.pack_into("<i", data, at, rng.choice([0, 1, -1, 2**31 - 1, -2**31, 1024, 1025, len(data)]))
        elif op == 2:
            del data[at:at + rng.randint(1, 16)]
        elif op == 3:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif data:
            data[at] ^= 1 << rng.randrange(8)
    return bytes(data)


@needs_mtools
def test_build_readers_only_raise_bareflow_errors(tmp_path):
    rng = random.Random(8)
    files = base_files()
    empty_profile = profile.empty_profile()
    tok_path, model_path = tmp_path / "tok", tmp_path / "model"
    model_path.write_bytes(files["/MODEL.BIN"][:28] + bytes(len(files["/MODEL.BIN"]) - 28))
    vocab = read_config(model_path).vocab_size
    readers = {
        "config": (files["/BAREFLOW.CFG"], lambda d: bootconfig.parse(d, 256)),
        "policy": (files["/POLICY.TBL"], policytable.check_for_runtime),
        "module": (files["/MODULES/SAMPLER.O0"], modformat.parse),
        "profile": (empty_profile, profile.decode_profile),
        "tokenizer": (files["/TOKENIZR.BIN"], lambda d: (tok_path.write_bytes(d), tokenizer_v2.load_any(tok_path, vocab))),
        "model": (model_path.read_bytes()[:28], None),
    }
    executions = 0
    for name, (seed, read) in readers.items():
        for _ in range(300):
            data = _mutate(rng, seed)
            if name == "model":
                model_path.write_bytes(data[:28] + bytes(max(0, len(files["/MODEL.BIN"]) - 28)))
                read = lambda d: read_config(model_path)  # noqa: E731
            try:
                read(data)
            except BareflowError:
                pass
            executions += 1
    assert executions == 1800

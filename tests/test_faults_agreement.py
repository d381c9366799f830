"""Issue 8, kind 2: the build's validators and the kernel accept exactly the same files.

For each case of tests/faults_corpus.py (tokenizer, model header, config, policy table, module
file; valid ones and invalid ones, at the limits on both sides) the build's readers judge the
full file set and bareflow-hosted boots it; both must say the same.  Before the fix the kernel
ran a tokenizer with two identical pieces that the build refuses (the issue's example), and
disagreed on empty pieces, max_token_length above 1024, a two-token vocabulary, the model
header limits, and config values such as 0e999 and denormal temperatures.
"""
import dataclasses
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bareflow.image import bootconfig

from bareflow.modules import modformat

from bareflow.policy import table as policytable
from bareflow.errors import BareflowError
from bareflow.model.checkpoint import read_config
from bareflow.tiers.levels import TIERS
from bareflow.model import tokenizer_v2
from faults_corpus import cases
from test_runtime_hosted import base_files, hosted_program, make_image, needs_mtools, run_image, synthetic_model

EXPECTED_VALID = {"valid", "valid-crlf", "valid-defaults-only", "valid-empty-prompt", "valid-seed-max",
                  "valid-plus-sign", "valid-leading-dot", "valid-exponent", "valid-tiny-normal", "valid-limits",
                  "valid-synthetic", "valid-small-shared", "valid-small-separate", "max-token-length-1024",
                  "seq-len-65536", "n-layers-256", "valid-jit-timeout-limits", "valid-jit-timeout-max"}


# Faults of the llama2.c tokenizer.bin layout itself (its max_token_length field, record lengths,
# bytes after the last record): the build refuses them when it converts the file to
# TOKENIZR.BIN v2, and v2 has no such fields, so the kernel never sees them.  The kernel's v2
# checks are paired with the build's in tests/test_tokenizer_v2.py.
V1_LAYOUT_ONLY = {"max-token-length-1025", "max-token-length-0", "nul-in-piece", "piece-over-max",
                  "trailing-byte"}


def build_accepts(files):
    """The build's readers over a whole file set; returns None or the first refusal."""
    work = Path(tempfile.mkdtemp(prefix="bf-agree-"))
    try:
        (work / "model").write_bytes(files["/MODEL.BIN"])
        (work / "tok").write_bytes(files["/TOKENIZR.BIN"])
        cfg = read_config(work / "model")
        tokenizer_v2.load_any(work / "tok", cfg.vocab_size)
        bootconfig.parse(files["/BAREFLOW.CFG"], cfg.seq_len)
        policytable.check_for_runtime(files["/POLICY.TBL"])
        exports = set(hosted_exports())
        for path, data in files.items():
            if not path.startswith("/MODULES/"):
                continue
            info = modformat.parse(data, what=path)
            layer, tier = path.split("/")[-1].lower().split(".")
            if (info.layer, info.tier, info.isa) != (layer, tier.upper(), "x86-64"):
                raise BareflowError(f"{path}: holds {info.layer} {info.tier} {info.isa}")
            if set(info.imports) - exports:
                raise BareflowError(f"{path}: imports {sorted(set(info.imports) - exports)}")
        return None
    except BareflowError as e:
        return str(e)


def hosted_exports():
    from test_runtime_hosted import module_files
    return {name for data in module_files().values() for name in modformat.parse(data).imports}


def as_kernel_reads(files):
    """The file set as it goes on the image: a llama2.c tokenizer.bin is converted to TOKENIZR.BIN v2
    by the build (the kernel reads only v2), so a tokenizer case reaches the kernel converted;
    one the build refuses is written as v2 without the build's checks, so the kernel's own
    checks of the same fault are compared (docs/tokenizer-format.md)."""
    data = files.get("/TOKENIZR.BIN", b"")
    if data[:4] != tokenizer_v2.MAGIC:
        with _CONVERTING:       # unchecked_v2 swaps tokenizer_v2.validate: one thread at a time
            return _converted(files, data)
    return files


# kernel_accepts runs in two threads; without this lock one thread could save the other's
# stand-in for tokenizer_v2.validate and "restore" it, leaving the build's tokenizer checks off
# for the rest of the session (test_tokenizer_v2's refusals then failed in a full run).
_CONVERTING = threading.Lock()


def _converted(files, data):
    work = Path(tempfile.mkdtemp(prefix="bf-agree-tok-"))
    (work / "tok").write_bytes(data)
    try:
        vocab = tokenizer_v2.load_any(work / "tok")
        files = dict(files, **{"/TOKENIZR.BIN": tokenizer_v2.encode(vocab)})
    except BareflowError:
        files = dict(files, **{"/TOKENIZR.BIN": unchecked_v2(data)})
    except Exception:       # not even llama2.c's layout: the kernel sees the bytes themselves
        pass
    return files


def unchecked_v2(v1_bytes):
    """TOKENIZR.BIN v2 holding a llama2.c tokenizer's records as they are, faults included."""
    import struct
    if len(v1_bytes) < 12:
        return v1_bytes             # no record to carry over: the kernel sees the bytes themselves
    pieces, scores, off = [], [], 4
    while off + 8 <= len(v1_bytes):
        score, n = struct.unpack_from("<fi", v1_bytes, off)
        pieces.append(v1_bytes[off + 8:off + 8 + max(n, 0)])
        scores.append(score)
        off += 8 + max(n, 0)
    vocab = tokenizer_v2.load_any(synthetic_model()[1])
    vocab = dataclasses.replace(vocab, pieces=pieces, scores=scores, types=[vocab.types[3]] * len(pieces))
    saved, tokenizer_v2.validate = tokenizer_v2.validate, lambda v: None
    try:
        return tokenizer_v2.encode(vocab)
    finally:
        tokenizer_v2.validate = saved


def kernel_accepts(case, tmp):
    files = base_files()
    files.update(case.files)
    files = as_kernel_reads(files)
    run = run_image(make_image(tmp / f"{case.format}-{case.name}.img", files))
    assert run.code in (0, 1), run.out[-2000:]
    return run.code == 0, run.out.splitlines()[-1] if run.lines else ""


@needs_mtools
def test_build_and_kernel_agree_on_every_case(tmp_path):
    hosted_program()
    corpus = list(cases())
    with ThreadPoolExecutor(max_workers=2) as pool:
        kernel = list(pool.map(lambda c: kernel_accepts(c, tmp_path), corpus))
    disagreements = []
    for case, (k_ok, k_last) in zip(corpus, kernel):
        if case.format == "tokenizer" and case.name in V1_LAYOUT_ONLY:
            assert build_accepts({**base_files(), **case.files}) is not None, case.name
            continue
        files = base_files()
        files.update(case.files)
        refusal = build_accepts(files)
        if (refusal is None) != k_ok:
            disagreements.append(f"{case.format}/{case.name}: build {'accepts' if refusal is None else refusal!r}, "
                                 f"kernel {'accepts' if k_ok else k_last!r}")
        elif k_ok != (case.name in EXPECTED_VALID):
            disagreements.append(f"{case.format}/{case.name}: both {'accept' if k_ok else 'refuse'}, expected the "
                                 "opposite")
    assert not disagreements, "\n".join(disagreements)


@needs_mtools
def test_duplicate_tokenizer_piece_is_refused_by_the_kernel(tmp_path):
    """The issue's example on its own, with the message that names the two tokens."""
    case = next(c for c in cases() if c.format == "tokenizer" and c.name == "duplicate-piece")
    files = base_files()
    files.update(case.files)
    run = run_image(make_image(tmp_path / "dup.img", files))
    run = run_image(make_image(tmp_path / "dup.img", as_kernel_reads(files)))
    assert run.code == 1 and "tokenizer /TOKENIZR.BIN: token" in run.panic and "has the same piece as token" \
        in run.panic, run.out[-1000:]

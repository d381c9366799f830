"""A UTF-8 prompt (accents, CJK, an emoji) through `scons image` on stories260K: the hosted run
and a QEMU boot give the numpy reference's tokens and text, characters whole."""
import shutil

import pytest

from bareflow.model import reference
from buildutil import QEMU_SUCCESS, hosted, qemu, result, scons

from test_runtime_hosted import DATA, needs_data

PROMPT = "Café naïve 東京 🙂 once"


@pytest.fixture(scope="module")
def utf8_build(tmp_path_factory):
    build = tmp_path_factory.mktemp("utf8")
    scons(build, "image", "hosted", "-j2", f"MODEL={DATA / 'stories260K.bin'}", f"TOKENIZER={DATA / 'tok512.bin'}",
          f"PROMPT={PROMPT}", "STEPS=40")
    return build


def _expected():
    return reference.generate(DATA / "stories260K.bin", DATA / "tok512.bin", PROMPT, 40)


@needs_data
def test_utf8_prompt_image_hosted(utf8_build, tmp_path):
    image = shutil.copy(utf8_build / "bareflow.img", tmp_path / "run.img")
    status, out = hosted(utf8_build / "bareflow-hosted", image)
    assert status == 0, out[-2000:]
    r, ref = result(out), _expected()
    assert r["prompt"] == PROMPT and r["prompt_tokens"] == ref["prompt_tokens"]
    assert r["tokens"] == ref["tokens"] and r["text"] == ref["text"]
    assert "東京 🙂" in out


@needs_data
@pytest.mark.qemu
def test_utf8_prompt_image_in_qemu(utf8_build, tmp_path):
    image = shutil.copy(utf8_build / "bareflow.img", tmp_path / "boot.img")
    status, out = qemu(image)
    assert status == QEMU_SUCCESS, out[-3000:]
    r = result(out)
    assert r["prompt"] == PROMPT and r["tokens"] == _expected()["tokens"]
    assert "東京 🙂" in out

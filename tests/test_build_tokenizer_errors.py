"""Build-time tokenizer and prompt errors name the culprit and leave no image behind."""
import pytest

from buildutil import scons

from test_runtime_hosted import DATA, needs_data


def _fails(build, *args):
    proc = scons(build, "image", *args, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not (build / "bareflow.img").exists(), "a failed build left an image behind"
    return proc.stdout


def test_invalid_utf8_prompt(tmp_path):
    prompt = b"caf\xc3(".decode("utf-8", "surrogateescape")      # raw bytes on the command line
    assert "PROMPT is not valid UTF-8: byte 0xc3" in _fails(tmp_path / "b", f"PROMPT={prompt}")


@needs_data
def test_tokenizer_vocab_mismatch(tmp_path):
    """stories260K (vocab 512) with a tokenizer of another size."""
    other = tmp_path / "tok500.bin"
    data = (DATA / "tok512.bin").read_bytes()
    import struct
    off, n = 4, 0
    while n < 500:
        off += 8 + struct.unpack_from("<i", data, off + 4)[0]
        n += 1
    other.write_bytes(data[:off])
    out = _fails(tmp_path / "b", f"MODEL={DATA / 'stories260K.bin'}", f"TOKENIZER={other}")
    assert "tok500.bin: 500 tokens but the model's vocab_size is 512" in out


def test_chat_needs_a_gguf_model(tmp_path):
    assert "CHAT=1 needs MODEL=<a GGUF file with tokenizer.chat_template>" in _fails(tmp_path / "b", "CHAT=1")

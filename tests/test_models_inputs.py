"""MODEL=/TOKENIZER= inputs: each kind of bad path or bad file gets its own one-line error naming
the file (bareflow/model/inputs.py), decided from the file's content before anything is built."""
import os
import struct

import pytest

from bareflow.errors import BareflowError
from bareflow.model import gguf_model, inputs, tokenizer_v2
from bareflow.model.gguf_writer import LlamaShape, write_llama_gguf

from buildutil import stories
import fetch_models  # tools/

SHAPE = LlamaShape(dim=64, hidden_dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300)


def _error(fn, *args):
    with pytest.raises(BareflowError) as exc:
        fn(*args)
    msg = str(exc.value)
    assert "\n" not in msg and "Error:" not in msg, msg       # one line, no nested exception text
    return msg


def test_missing_path_and_unexpanded_tilde(tmp_path):
    msg = _error(inputs.model_kind, str(tmp_path / "none.gguf"))
    assert msg == f"MODEL {tmp_path / 'none.gguf'}: no such file"
    msg = _error(inputs.model_kind, "~/.cache/bareflow-no-such/x.gguf")
    assert "no such file" in msg and "did not expand ~" in msg
    assert os.path.expanduser("~/.cache/bareflow-no-such/x.gguf") in msg


def test_directory_device_and_empty_file(tmp_path):
    assert "is a directory" in _error(inputs.model_kind, str(tmp_path))
    assert "MODEL /dev/null: is a character device" in _error(inputs.model_kind, "/dev/null")
    empty = tmp_path / "e.gguf"
    empty.write_bytes(b"")
    assert _error(inputs.model_kind, str(empty)) == f"MODEL {empty}: the file is empty (0 bytes)"


def test_garbage_is_neither_format_and_tokenizer_hint_only_when_missing(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(bytes(range(200, 256)) * 4)
    msg = _error(inputs.model_kind, str(garbage), False)
    assert msg.startswith(f"MODEL {garbage}: neither a GGUF file (no 'GGUF' magic) nor a llama2.c checkpoint")
    assert msg.endswith("a llama2.c checkpoint also needs TOKENIZER=")
    assert "TOKENIZER" not in _error(inputs.model_kind, str(garbage), True)
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"hello")
    assert "5 bytes, less than the 28-byte llama2.c header" in _error(inputs.model_kind, str(tiny))


def test_tokenizer_given_as_model_is_named_swapped(tmp_path):
    _, tok = stories()
    assert _error(inputs.model_kind, str(tok), True) == \
        f"MODEL {tok}: is a tokenizer file, not a model: were MODEL and TOKENIZER swapped?"
    assert inputs.TOKENIZR_V2_MAGIC == tokenizer_v2.MAGIC
    v2 = tmp_path / "TOKENIZR.BIN"
    tokenizer_v2.convert_file(str(tok), str(v2), 512)
    assert "is a tokenizer file" in _error(inputs.model_kind, str(v2), False)


def test_kinds_come_from_content_not_extension(tmp_path):
    model, _ = stories()
    assert inputs.model_kind(str(model), False) == "llama2.c"
    g = write_llama_gguf(tmp_path / "model.bin", SHAPE)
    assert inputs.model_kind(str(g), False) == "gguf"


def test_garbage_tokenizer_names_the_tokenizer_not_the_model(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(struct.pack("<i", -436833337) + bytes(60))
    msg = _error(tokenizer_v2.load_any, str(garbage), 512)
    assert msg.startswith(f"TOKENIZER {garbage}: not a llama2.c tokenizer.bin")
    assert "max_token_length as int32 1..1024" in msg and "-436833337" in msg and "vocab_size" not in msg
    garbage.write_bytes(struct.pack("<i", 16) + struct.pack("<fi", 0.0, 5000))   # plausible start, bad record
    assert "record 0 at byte 4: piece length 5000, expected 1..max_token_length=16" in \
        _error(tokenizer_v2.load_any, str(garbage), 512)
    assert "TOKENIZER /dev/null: is a character device" in _error(tokenizer_v2.load_any, "/dev/null", 512)


def test_truncated_gguf_names_the_tensor_past_the_end(tmp_path):
    p = write_llama_gguf(tmp_path / "t.gguf", SHAPE)
    data = p.read_bytes()
    p.write_bytes(data[:-5000])
    msg = _error(gguf_model.read_gguf, str(p))
    assert msg.startswith(f"GGUF {p}: truncated: tensor ") and f"the file has {len(data) - 5000}" in msg
    assert "reshape" not in msg


def test_truncated_gguf_header_and_metadata(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF")
    assert "truncated after the GGUF magic: the file has 4 bytes" in _error(gguf_model.read_gguf, str(p))
    full = write_llama_gguf(tmp_path / "full.gguf", SHAPE).read_bytes()
    p.write_bytes(full[:200])                           # cut inside the metadata
    assert "truncated or corrupt: the 200-byte file ends inside its metadata or tensor list" in \
        _error(gguf_model.read_gguf, str(p))


# ---------------------------------------------------------------- PROMPT against STEPS

def _stories_vocab():
    model, tok = stories()
    return tokenizer_v2.load_any(str(tok), 512)


def test_steps_below_the_prompt_is_refused_and_the_boundary_generates(tmp_path):
    """bf_generate samples from position n-1 on: STEPS=n generates one token, STEPS=n-1 none."""
    from bareflow.model import prompt
    vocab = _stories_vocab()
    n = len(vocab.tokenize("Once upon a time"))
    v = {"PROMPT": "Once upon a time", "STEPS": str(n), "MODEL": "", "CHAT": "no"}
    assert prompt.check(v, vocab, 512) == n
    v["STEPS"] = str(n - 1)
    msg = _error(prompt.check, v, vocab, 512)
    assert msg == (f"PROMPT is {n} tokens; STEPS={n - 1} leaves none to generate: set STEPS above {n - 1} "
                   "(STEPS counts positions, the prompt's included)")
    assert "more than the model's sequence length 3" in _error(prompt.check, v, vocab, 3)


def test_steps_range_names_the_sequence_length():
    from bareflow.image import bootconfig
    msg = _error(bootconfig.check_steps, "99999999", 256)
    assert msg == ("STEPS='99999999': expected an integer in 1..256 (positions, the prompt's included; "
                   "256 is the model's sequence length, seq_len, or SEQ_LEN when that is lower)")
    assert _error(bootconfig.check_steps, "x", 256).startswith("STEPS='x': expected an integer in 1..256 (")


@pytest.mark.skipif(not fetch_models.smollm2_path().is_file(), reason="SmolLM2 GGUF absent: run tools/setup.sh online")
def test_chat_prompt_counts_the_template_smollm2():
    """The new-user trial: CHAT=1, default STEPS=32, a 37-token chat-wrapped prompt generated nothing."""
    from bareflow.model import prompt
    path = str(fetch_models.smollm2_path())
    vocab = tokenizer_v2.load_any(path)
    v = {"PROMPT": "What is the capital of France?", "MODEL": path, "CHAT": "1", "STEPS": "32"}
    assert _error(prompt.check, v, vocab, 8192) == (
        "PROMPT is 37 tokens (after the chat template); STEPS=32 leaves none to generate: set STEPS above 36 "
        "(STEPS counts positions, the prompt's included)")
    assert prompt.check(dict(v, STEPS="37"), vocab, 8192) == 37
    assert prompt.check(dict(v, CHAT="no"), vocab, 8192) == len(vocab.tokenize("What is the capital of France?"))

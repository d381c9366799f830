"""TOKENIZR.BIN v2 on the build side: the validator refuses exactly what the kernel refuses, the
generated Unicode table is current, chat templates split around the user message, the SmolLM2
vocabulary tokenizes as llama.cpp does, and the kernel wraps a prompt in chat_before/after."""
import json
import unicodedata
from pathlib import Path

import pytest

from bareflow.image import bootconfig
from bareflow.model import chat, tokenizer_v2, unicode_tables
from bareflow.errors import BareflowError

import test_runtime_badinput as bad
from test_runtime_hosted import base_files, config, needs_mtools, run_files, synthetic_model, tokenizer_file
from test_tokenizer_vectors import kernel_tokenize
import fetch_models  # tools/

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = fetch_models.smollm2_path()
needs_smollm2 = pytest.mark.skipif(not SMOLLM2.is_file(), reason=f"{SMOLLM2} absent: run tools/setup.sh online")


def test_unicode_table_is_generated_from_this_python():
    text = (REPO / "src/runtime/unicode_tables.c").read_text()
    if f'"{unicodedata.unidata_version}"' not in text:
        pytest.skip(f"unicode_tables.c was generated for another Unicode version than {unicodedata.unidata_version}")
    assert text == unicode_tables.c_source(), "regenerate: python -m bareflow.model.unicode_tables"


def test_character_classes():
    c = unicode_tables.char_class
    assert [c(ord(x)) for x in "aé東٣5 \u3000!🙂"] == [unicode_tables.LETTER] * 3 + [unicode_tables.NUMBER] * 2 + \
        [unicode_tables.SPACE] * 2 + [unicode_tables.OTHER] * 2


# The kernel's refusals (test_runtime_badinput) that are about the file itself.
FILE_CASES = ["tokenizer_truncated", "tokenizer_trailing", "tokenizer_v1_file", "tokenizer_checksum",
              "tokenizer_kind", "tokenizer_offsets", "tokenizer_bad_id", "tokenizer_score_nan",
              "tokenizer_piece_outside", "tokenizer_bad_type", "tokenizer_duplicate_piece"]


@pytest.mark.parametrize("case", FILE_CASES)
def test_build_validator_refuses_what_the_kernel_refuses(case):
    files, _fragment = bad.CASES[case](base_files())
    with pytest.raises(BareflowError, match="tokenizer"):
        tokenizer_v2.decode(files["/TOKENIZR.BIN"])


def test_good_file_round_trips_and_vocab_mismatch_is_named():
    _, tok = synthetic_model()
    data = tokenizer_file(tok)
    v = tokenizer_v2.decode(data)
    assert tokenizer_v2.encode(v) == data
    with pytest.raises(BareflowError, match="tokens but the model's vocab_size is 600"):
        tokenizer_v2.load_any(tok, 600)


def test_invalid_utf8_prompt_is_a_named_build_error():
    with pytest.raises(BareflowError, match="PROMPT is not valid UTF-8: byte 0xc3"):
        bootconfig.prompt_bytes(b"caf\xc3(".decode("utf-8", "surrogateescape"))
    v = tokenizer_v2.decode(tokenizer_file(synthetic_model()[1]))
    with pytest.raises(BareflowError, match="not valid UTF-8"):
        v.tokenize(b"\xff")


ZEPHYR = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + "
          "eos_token }}{% endif %}{% if loop.last and add_generation_prompt %}{{ '\n<|assistant|>' }}{% endif %}"
          "{% endfor %}")


def test_chat_template_split():
    assert chat.split_template(ZEPHYR, eos_token="</s>") == ("<|user|>\n", "</s>\n<|assistant|>")
    with pytest.raises(BareflowError, match="verbatim exactly once"):
        chat.split_template("{{ messages[0]['content'] | upper }}")
    with pytest.raises(BareflowError, match="cannot be rendered"):
        chat.split_template("{{ raise_exception('only system roles') }}")


def test_config_escapes_round_trip_through_the_kernel_reader(tmp_path):
    """chat_before/chat_after as the build writes them are unescaped by the kernel: the prompt
    tokens are those of before + prompt + after."""
    before, after = "Once upon\n a time, ", " and\tthen \\ end "
    cfg = bootconfig.render({"prompt": "a fox", "steps": "40", "chat_before": before, "chat_after": after}, 256)
    run = run_files(tmp_path, base_files(cfg=cfg))
    assert run.code == 0, run.out
    vocab = tokenizer_v2.decode(tokenizer_file(synthetic_model()[1]))
    assert run.result["prompt_tokens"] == vocab.tokenize(before + "a fox" + after)
    assert run.result["prompt"] == "a fox"


test_config_escapes_round_trip_through_the_kernel_reader = needs_mtools(
    test_config_escapes_round_trip_through_the_kernel_reader)


@pytest.fixture(scope="module")
def smollm2():
    import gguf
    reader = gguf.GGUFReader(str(SMOLLM2))
    return reader, tokenizer_v2.from_gguf(reader)


@needs_smollm2
@needs_mtools
def test_smollm2_vocabulary_in_the_kernel(tmp_path, smollm2):
    """llama.cpp: "Once upon a time" -> [6403, 1980, 253, 655]; chatml special tokens by text."""
    reader, vocab = smollm2
    assert (vocab.kind, vocab.pre, vocab.add_bos, vocab.eos) == (tokenizer_v2.KIND_GPT2, tokenizer_v2.PRE_SMOLLM,
                                                                 False, 2)
    before, after = chat.from_gguf(reader)
    assert before.endswith("<|im_start|>user\n") and after == "<|im_end|>\n<|im_start|>assistant\n"
    texts = ["Once upon a time", before + "What is the capital of France? 2024 Café 東京 🙂" + after]
    got = kernel_tokenize(tmp_path, tokenizer_v2.encode(vocab), texts, parse_special=True, add_bos=True)
    assert got[0] == [6403, 1980, 253, 655]
    assert got == [vocab.tokenize(t) for t in texts]
    assert got[1][0] == 1 and got[1][-4:] == [1, 520, 9531, 198]      # <|im_start|> assistant \n
    assert got[1].count(1) == 3 and got[1].count(2) == 2                           # 3 x <|im_start|>, 2 x <|im_end|>
    assert vocab.detokenize(-1, got[1]).decode("utf-8").count("Café 東京 🙂") == 1

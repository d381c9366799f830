"""UTF-8 prompts and output through the real runtime (bareflow-hosted), and the stream writer's
whole-character rule.

stories260K's 512-token vocabulary has no piece for most non-ASCII characters, so a prompt with
accents, CJK and an emoji exercises llama2.c's byte fallback; its tokens and generated text must
equal the project's numpy reference, and the result line must carry the characters whole.
"""
import json

from bareflow.model import reference, tokenizer_v2

from test_runtime_hosted import (DATA, base_files, config, needs_data, needs_mtools, run_files,
                                 simple_policy)

UTF8_PROMPT = "Café naïve 東京 🙂 once"


@needs_mtools
@needs_data
def test_utf8_prompt_on_stories260k_matches_reference(tmp_path):
    model = (DATA / "stories260K.bin", DATA / "tok512.bin")
    cfg = config(prompt=UTF8_PROMPT, steps=48)
    run = run_files(tmp_path, base_files(cfg=cfg, model=model, policy=simple_policy("O2")))
    assert run.code == 0, run.out
    r = run.result
    ref = reference.generate(*model, UTF8_PROMPT, 48)
    assert r["prompt"] == UTF8_PROMPT                       # whole characters in the result line
    assert r["prompt_tokens"] == ref["prompt_tokens"]
    vocab = tokenizer_v2.from_llama2c(DATA / "tok512.bin", 512)
    assert r["prompt_tokens"] == vocab.tokenize(UTF8_PROMPT)
    assert len(r["prompt_tokens"]) > len(UTF8_PROMPT)      # the emoji and CJK went through byte fallback
    assert r["tokens"] == ref["tokens"] and r["text"] == ref["text"]
    # The console printed the prompt's characters whole (they were split across byte tokens).
    assert "東京 🙂" in run.out
    assert run.lines[-1].isascii()                           # the result line escapes non-ASCII as \\uXXXX


@needs_mtools
def test_split_character_is_printed_whole(tmp_path):
    """The synthetic vocabulary has no multi-byte pieces: the prompt's characters are streamed
    one byte token at a time, and the console and the result line still show whole characters."""
    files = base_files(cfg=config(prompt="é東🙂", steps=12))
    run = run_files(tmp_path, files)
    assert run.code == 0, run.out
    assert "é東🙂" in run.out
    line = run.lines[-1]
    r = json.loads(line[len("BAREFLOW-RESULT "):])
    assert r["prompt"] == "é東🙂"
    assert "\\u00e9\\u6771\\ud83d\\ude42" in line


@needs_mtools
def test_sampled_eos_or_eot_ends_generation(tmp_path):
    """The tokenizer file's eos and eot ids stop the run when sampled (not included in tokens)."""
    files = base_files(cfg=config(steps=30))
    first = run_files(tmp_path, files)
    assert first.code == 0, first.out
    tokens = first.result["tokens"]
    assert len(tokens) > 8
    fresh = [i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i]]   # first time sampled
    assert len(fresh) >= 2
    for field, stop_at in (("eos", fresh[0]), ("eot", fresh[1])):
        vocab = tokenizer_v2.decode(files["/TOKENIZR.BIN"])
        stop = tokens[stop_at]
        setattr(vocab, field, stop)
        changed = dict(files, **{"/TOKENIZR.BIN": tokenizer_v2.encode(vocab)})
        run = run_files(tmp_path, changed)
        assert run.code == 0, run.out
        assert run.result["tokens"] == tokens[:stop_at], field
        assert stop in vocab.stop_ids()

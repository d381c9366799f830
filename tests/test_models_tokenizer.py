"""llama2.c tokenizer: file validation, encode (merges, byte fallback), decode, round trips."""
import struct
from pathlib import Path

import pytest

from bareflow.errors import BareflowError
from bareflow.model.tokenizer import Tokenizer, read_tokenizer, write_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BASE = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)]


def tiny(extra):
    """Specials + byte pieces + `extra` {piece: score}; returns (Tokenizer, id of each piece)."""
    pieces = BASE + [p.encode() for p in extra]
    scores = [0.0] * len(BASE) + list(extra.values())
    tok = Tokenizer(pieces, scores, max(map(len, pieces)))
    return tok, {p: tok.lookup(p.encode()) for p in extra}


def test_highest_score_pair_merges_first():
    tok, ids = tiny({" ": -9, "a": -9, "b": -9, "c": -9, "ab": 1.0, "bc": 2.0})
    # "bc" outscores "ab", so "a" is left alone even though "ab" is leftmost
    assert tok.encode("abc") == [1, ids[" "], ids["a"], ids["bc"]]
    tok, ids = tiny({" ": -9, "a": -9, "b": -9, "c": -9, "ab": 3.0, "bc": 2.0})
    assert tok.encode("abc") == [1, ids[" "], ids["ab"], ids["c"]]


def test_ties_merge_leftmost_and_merges_repeat():
    tok, ids = tiny({" ": -9, "a": -9, "aa": 1.0})
    assert tok.encode("aaa", bos=False) == [ids[" "], ids["aa"], ids["a"]]
    tok, ids = tiny({" ": -9, "a": -9, "aa": 1.0, "aaaa": 0.5})
    assert tok.encode("aaaa", bos=False) == [ids[" "], ids["aaaa"]]


def test_merged_piece_must_exist_at_every_step():
    # "abc" exists but neither "ab" nor "bc" does: llama2.c only merges adjacent pairs
    tok, ids = tiny({" ": -9, "a": -9, "b": -9, "c": -9, "abc": 5.0})
    assert tok.encode("abc") == [1, ids[" "], ids["a"], ids["b"], ids["c"]]


def test_dummy_prefix_takes_part_in_merges():
    tok, ids = tiny({" ": -9, "h": -9, "i": -9, " h": 1.0, " hi": 2.0, "hi": 0.5})
    # " h" (1.0) beats "hi" (0.5); then " h"+"i" -> " hi"
    assert tok.encode("hi") == [1, ids[" hi"]]
    assert tok.encode("") == [1]
    assert tok.encode("", bos=False) == []


def test_byte_fallback_per_utf8_character():
    tok, ids = tiny({" ": -9, "a": -9, "\u00e9": -9})
    assert tok.encode("a\u00e9") == [1, ids[" "], ids["a"], ids["\u00e9"]]
    # not in the vocab: each byte of the character becomes byte + 3
    assert tok.encode("\u00e8") == [1, ids[" "], 0xC3 + 3, 0xA8 + 3]
    assert tok.encode("\U0001F600") == [1, ids[" "]] + [b + 3 for b in "\U0001F600".encode()]
    # five continuation bytes: llama2.c cuts the run after 4 bytes
    assert tok.encode(b"\xe9\x80\x80\x80\x80") == [1, ids[" "], 0xE9 + 3, 0x83, 0x83, 0x83, 0x83]


def test_missing_dummy_prefix_and_short_vocab_are_errors():
    tok, _ = tiny({"a": -1})
    with pytest.raises(BareflowError, match=r'dummy-prefix piece " "'):
        tok.encode("a")
    small = Tokenizer([b"<unk>", b"<s>", b"</s>", b" "], [0, 0, 0, 0], 5, path="t.bin")
    with pytest.raises(BareflowError, match=r"t\.bin: byte 0x61 needs fallback token 100"):
        small.encode("a")
    with pytest.raises(BareflowError, match="NUL"):
        tok.encode("a\0b")


def test_decode_rules():
    tok, ids = tiny({" ": -9, " hi": -9, "x": -9})
    assert tok.decode(1, ids[" hi"]) == b"hi"        # leading space dropped after BOS only
    assert tok.decode(ids["x"], ids[" hi"]) == b" hi"
    assert tok.decode(ids["x"], 3 + 0x41) == b"A"     # "<0x41>"
    assert tok.decode(1, 3 + 0x20) == b" "            # a byte piece has no leading space to drop
    assert tok.decode(ids["x"], 2) == b"</s>"
    with pytest.raises(BareflowError, match="cannot decode token 999"):
        tok.decode(1, 999)


@pytest.mark.parametrize("text", ["hello world", "a  b", "caf\u00e9 \U0001F600!", " lead"])
def test_round_trip_through_decode(text):
    tok, _ = tiny({c: -1.0 for c in " abcdefghijklmnopqrstuvwxyz!"} | {"he": 1.0, "ll": 2.0,
                                                                          " w": 0.5, "hell": 3.0})
    ids = tok.encode(text)
    # the dummy " " after BOS decodes to nothing, so decoding gives back the prompt exactly
    assert tok.decode_all(ids[0], ids[1:]).decode() == text


def write_raw(path, max_len, entries):
    parts = [struct.pack("<i", max_len)]
    for score, piece in entries:
        parts.append(struct.pack("<fi", score, len(piece)) + piece)
    path.write_bytes(b"".join(parts))
    return path


def test_file_round_trip(tmp_path):
    tok, _ = tiny({" ": -1.5, "ab": 2.25})
    path = tmp_path / "tok.bin"
    write_tokenizer(path, tok.pieces, tok.scores)
    again = read_tokenizer(path, tok.vocab_size)
    assert again.pieces == tok.pieces and again.scores == tok.scores
    assert again.max_token_length == 6 and path.read_bytes() == again.to_bytes()


@pytest.mark.parametrize("entries,max_len,vocab,message", [
    ([(0, b"<unk>"), (0, b"<s>")], 8, 3, r"token 2: file ends at byte \d+ inside its score"),
    ([(0, b"<unk>"), (0, b"<s>"), (0, b"</s>")], 4, 3, r"token 0: length 5 is outside "
                                                       r"1..max_token_length=4"),
    ([(0, b"<unk>"), (0, b""), (0, b"</s>")], 8, 3, r"token 1: length 0 is outside"),
    ([(0, b"<unk>"), (0, b"<s>"), (0, b"<s>")], 8, 3, r"token 2: piece b'<s>' duplicates token 1"),
    ([(0, b"<unk>"), (0, b"<s>"), (0, b"</s>"), (0, b"x")], 8, 3,
     r"9 bytes left after token 2"),
    ([(0, b"<unk>"), (0, b"<s>"), (0, b"</s>")], 0, 3, r"max_token_length=0"),
    ([(0, b"<unk>"), (0, b"<s>"), (0, b"</\0>")], 8, 3, r"token 2: .*NUL"),
    ([(float("inf"), b"<unk>"), (0, b"<s>"), (0, b"</s>")], 8, 3, r"token 0: score inf"),
    ([(0, b"<unk>"), (0, b"<s>")], 8, 2, r"vocab_size=2; ids 0..2"),
])
def test_bad_files_name_file_and_token(tmp_path, entries, max_len, vocab, message):
    path = write_raw(tmp_path / "bad_tok.bin", max_len, entries)
    with pytest.raises(BareflowError, match=r"tokenizer .*bad_tok\.bin: " + message):
        read_tokenizer(path, vocab)


def test_truncated_piece_and_missing_file(tmp_path):
    path = write_raw(tmp_path / "t.bin", 8, [(0, b"<unk>"), (0, b"<s>"), (0, b"</s>")])
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(BareflowError, match=r"token 2: file ends at byte \d+ inside its 4-byte"):
        read_tokenizer(path, 3)
    with pytest.raises(BareflowError, match=r"tokenizer .*none\.bin: file does not exist"):
        read_tokenizer(tmp_path / "none.bin", 3)


@pytest.fixture(scope="module")
def tok512():
    path = DATA / "tok512.bin"
    if not path.exists():
        pytest.skip(f"{path} not present (the shared data directory is missing)")
    return path


def test_tok512_reads_and_rewrites_byte_identically(tok512):
    tok = read_tokenizer(tok512, 512)
    assert tok.max_token_length == 7 and tok.pieces[1] == b"\n<s>\n"
    assert tok.to_bytes() == tok512.read_bytes()
    with pytest.raises(BareflowError, match=r"tok512\.bin: .*more tokens than the model's "
                                            r"vocab_size=511"):
        read_tokenizer(tok512, 511)
    with pytest.raises(BareflowError, match=r"tok512\.bin: token 512: file ends"):
        read_tokenizer(tok512, 513)


def test_tok512_encodes_story_words_into_merged_pieces(tok512):
    tok = read_tokenizer(tok512, 512)
    ids = tok.encode("Once upon a time")
    assert [tok.pieces[i] for i in ids] == [b"\n<s>\n", b" Once", b" upon", b" a", b" time"]
    text = "Lily's \u00fcber-ball costs $5, \U0001F600!"
    ids = tok.encode(text)
    assert tok.decode_all(ids[0], ids[1:]).decode() == text

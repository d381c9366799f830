"""llama2.c tokenizer files: validated reading, writing, encode and decode.

The kernel's tokenizer (src/runtime) is tested against `encode`/`decode` here, so both follow
llama2.c's algorithm step for step (docs/models.md): BOS, a dummy-prefix " ", one token per
UTF-8 character with byte fallback, then repeated highest-score pair merging.
"""
from __future__ import annotations

import math
import re
import struct
from pathlib import Path

from bareflow.errors import BareflowError

BOS_ID = 1
EOS_ID = 2
BYTE_FALLBACK_OFFSET = 3          # byte b is token b + 3 when its character is not in the vocab


def _f32(x) -> float:
    """Round to float32 (scores are float32 in the file and in the kernel)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


_NO_SCORE = _f32(-1e10)  # llama2.c's starting best_score: a piece scoring <= it never merges
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{2})>")


class Tokenizer:
    """pieces[i] is token i's bytes; scores[i] its merge priority (float32 as a Python float)."""

    def __init__(self, pieces, scores, max_token_length, path="<memory>"):
        self.path = str(path)
        self.pieces = [bytes(p) for p in pieces]
        try:
            self.scores = [_f32(float(s)) for s in scores]
        except (OverflowError, TypeError, ValueError) as e:
            raise BareflowError(f"tokenizer {self.path}: a score is not a float32 ({e})") from None
        self.max_token_length = int(max_token_length)
        self._validate()
        self._ids = {p: i for i, p in enumerate(self.pieces)}

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def _fail(self, msg):
        raise BareflowError(f"tokenizer {self.path}: {msg}")

    def _validate(self):
        if len(self.pieces) != len(self.scores):
            self._fail(f"{len(self.pieces)} pieces but {len(self.scores)} scores")
        if len(self.pieces) <= EOS_ID:
            self._fail(f"vocab_size={len(self.pieces)}; ids 0..2 must be <unk>, BOS, EOS")
        if self.max_token_length <= 0:
            self._fail(f"max_token_length={self.max_token_length}; it must be positive")
        seen = {}
        for i, (piece, score) in enumerate(zip(self.pieces, self.scores)):
            if not piece:
                self._fail(f"token {i}: empty piece")
            if len(piece) > self.max_token_length:
                # the kernel sizes its merge buffer from max_token_length
                self._fail(f"token {i}: piece is {len(piece)} bytes, longer than "
                           f"max_token_length={self.max_token_length}")
            if b"\0" in piece:
                self._fail(f"token {i}: piece {piece!r} contains a NUL byte")
            if not math.isfinite(score):
                self._fail(f"token {i}: score {score} is not finite")
            if piece in seen:
                # lookups by string would be ambiguous (llama2.c's bsearch picks either)
                self._fail(f"token {i}: piece {piece!r} duplicates token {seen[piece]}")
            seen[piece] = i

    def lookup(self, piece: bytes) -> int:
        return self._ids.get(piece, -1)

    def encode(self, text, bos: bool = True) -> list:
        """Token ids for `text` (str as UTF-8, or bytes), exactly as llama2.c's encode."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if b"\0" in data:
            raise BareflowError(f"tokenizer {self.path}: prompt contains a NUL byte "
                                "(the kernel reads it as a C string)")
        tokens = [BOS_ID] if bos else []
        if data:
            space = self.lookup(b" ")
            if space < 0:
                self._fail('prompt needs the dummy-prefix piece " " but the vocab has none')
            tokens.append(space)
        # One token per UTF-8 character; a character is at most 4 bytes, so a longer run of
        # continuation bytes is cut into 4-byte chunks, as llama2.c does.
        char = b""
        for i, byte in enumerate(data):
            if byte & 0xC0 != 0x80:
                char = b""
            char += bytes([byte])
            nxt = data[i + 1] if i + 1 < len(data) else 0
            if nxt & 0xC0 == 0x80 and len(char) < 4:
                continue
            tid = self.lookup(char)
            if tid >= 0:
                tokens.append(tid)
            else:
                for b in char:
                    fallback = b + BYTE_FALLBACK_OFFSET
                    if fallback >= self.vocab_size:
                        self._fail(f"byte 0x{b:02X} needs fallback token {fallback} but "
                                   f"vocab_size={self.vocab_size}")
                    tokens.append(fallback)
            char = b""
        # Merge the best-scoring adjacent pair (leftmost on ties: strict >) until none is left.
        while True:
            best_score, best_id, best_idx = _NO_SCORE, -1, -1
            for i in range(len(tokens) - 1):
                tid = self.lookup(self.pieces[tokens[i]] + self.pieces[tokens[i + 1]])
                if tid >= 0 and self.scores[tid] > best_score:
                    best_score, best_id, best_idx = self.scores[tid], tid, i
            if best_idx < 0:
                return tokens
            tokens[best_idx:best_idx + 2] = [best_id]

    def decode(self, prev: int, token: int) -> bytes:
        """Bytes token `token` prints after `prev`: no leading space right after BOS,
        and "<0xHH>" pieces stand for the raw byte HH."""
        if not 0 <= token < self.vocab_size:
            self._fail(f"cannot decode token {token}: vocab_size={self.vocab_size}")
        piece = self.pieces[token]
        if prev == BOS_ID and piece[:1] == b" ":
            piece = piece[1:]
        m = _BYTE_PIECE.fullmatch(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece

    def decode_all(self, prev: int, tokens) -> bytes:
        out = []
        for t in tokens:
            out.append(self.decode(prev, t))
            prev = t
        return b"".join(out)

    def to_bytes(self) -> bytes:
        parts = [struct.pack("<i", self.max_token_length)]
        for piece, score in zip(self.pieces, self.scores):
            parts.append(struct.pack("<fi", score, len(piece)))
            parts.append(piece)
        return b"".join(parts)


def read_tokenizer(path, vocab_size: int) -> Tokenizer:
    """Read and validate a tokenizer file holding exactly `vocab_size` tokens (the model's)."""
    p = Path(path)
    if not p.is_file():
        raise BareflowError(f"tokenizer {path}: file does not exist")
    data = p.read_bytes()
    if vocab_size <= 0:
        raise BareflowError(f"tokenizer {path}: model vocab_size={vocab_size} is not positive")
    if len(data) < 4:
        raise BareflowError(f"tokenizer {path}: file has {len(data)} bytes, "
                            "too short for the int32 max_token_length")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if max_len <= 0:
        raise BareflowError(f"tokenizer {path}: max_token_length={max_len}; it must be positive")
    off, pieces, scores = 4, [], []
    for i in range(vocab_size):
        if off + 8 > len(data):
            raise BareflowError(f"tokenizer {path}: token {i}: file ends at byte {len(data)} "
                                f"inside its score/length (the model has vocab_size={vocab_size})")
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        if n <= 0 or n > max_len:
            raise BareflowError(f"tokenizer {path}: token {i}: length {n} is outside "
                                f"1..max_token_length={max_len}")
        if off + n > len(data):
            raise BareflowError(f"tokenizer {path}: token {i}: file ends at byte {len(data)} "
                                f"inside its {n}-byte piece")
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    if off != len(data):
        raise BareflowError(f"tokenizer {path}: {len(data) - off} bytes left after token "
                            f"{vocab_size - 1}; the file holds more tokens than the model's "
                            f"vocab_size={vocab_size}")
    return Tokenizer(pieces, scores, max_len, path=path)


def write_tokenizer(path, pieces, scores, max_token_length=None) -> None:
    """Write a tokenizer file (validated the same way it would be read)."""
    if max_token_length is None:
        max_token_length = max(len(p) for p in pieces)
    tok = Tokenizer(pieces, scores, max_token_length, path=path)
    Path(path).write_bytes(tok.to_bytes())

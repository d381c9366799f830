"""The on-image tokenizer file /TOKENIZR.BIN, format v2 (docs/tokenizer-format.md).

One file holds any of the three tokenizers the kernel runs: llama2.c's (`KIND_LLAMA2C`), the
SentencePiece-style one llama.cpp calls "llama" (`KIND_SPM`) and GPT-2 byte-level BPE ("gpt2",
`KIND_GPT2`, with the pre-tokenizer split named by GGUF's `tokenizer.ggml.pre`).

- `from_gguf(path_or_reader)` and `from_llama2c(path)` build a `Vocab` from a model's files;
- `encode(vocab) -> bytes` writes the file, `decode(data, path)` reads and checks it with exactly
  the rules of src/runtime/tokfile.c (same checks, same order of concern);
- `Vocab.tokenize(text)` is a pure-Python reference of the kernel's tokenizer (llama.cpp's
  algorithms, see src/runtime/tokenizer.c), and `Vocab.piece(prev, id)` the bytes a token prints.

Sources: GGUF's tokenizer keys and token types are llama.cpp's (gguf-py `gguf.constants`); the
byte<->unicode table is GPT-2's `bytes_to_unicode`; the split rules are llama.cpp's
`unicode_regex_split_custom_gpt2/llama3` expressed over the Unicode tables of unicode_tables.py.
"""
from __future__ import annotations

import functools
import heapq
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from . import unicode_tables
from ..errors import BareflowError

MAGIC = b"BFTK"
VERSION = 2
HEADER_SIZE = 96
HEADER = struct.Struct("<4sHHIIIIII5iIIIIII20s")
assert HEADER.size == HEADER_SIZE
TOKEN = struct.Struct("<fIHBB")     # score, string offset, length, type, reserved
MERGE = struct.Struct("<II")        # left id, right id; rank = index
CRC_OFFSET = 72

KIND_LLAMA2C, KIND_SPM, KIND_GPT2 = 1, 2, 3
KIND_NAMES = {KIND_LLAMA2C: "llama2c", KIND_SPM: "llama", KIND_GPT2: "gpt2"}
PRE_NONE, PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3 = 0, 1, 2, 3
PRE_NAMES = {PRE_NONE: "none", PRE_GPT2: "gpt-2", PRE_SMOLLM: "smollm", PRE_LLAMA3: "llama-bpe"}
# tokenizer.ggml.pre values and the split each one uses (llama.cpp's llm_tokenizer_bpe table).
GGUF_PRE = {"gpt-2": PRE_GPT2, "mpt": PRE_GPT2, "olmo": PRE_GPT2, "jais": PRE_GPT2,
            "smollm": PRE_SMOLLM, "starcoder": PRE_SMOLLM, "refact": PRE_SMOLLM, "codeshell": PRE_SMOLLM,
            "exaone": PRE_SMOLLM, "minerva-7b": PRE_SMOLLM,
            "llama-bpe": PRE_LLAMA3, "llama3": PRE_LLAMA3, "smaug-bpe": PRE_LLAMA3, "dbrx": PRE_LLAMA3}

# Token types: GGUF's tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {NORMAL: "normal", UNKNOWN: "unknown", CONTROL: "control", USER_DEFINED: "user-defined",
              UNUSED: "unused", BYTE: "byte"}

FLAG_ADD_BOS, FLAG_ADD_SPACE_PREFIX, FLAG_STOP_ON_BOS = 1, 2, 4
MAX_TOKENS = 1 << 20
MAX_MERGES = 1 << 21
MAX_PIECE = 1024
MAX_PROMPT_TOKENS = 4096      # the kernel's BF_MAX_PROMPT_TOKENS (src/runtime/rt.h)
NO_ID = -1
SPM_SPACE = "\u2581".encode()     # SentencePiece writes " " as U+2581 in its pieces


def bytes_to_unicode() -> dict:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other
    68 bytes take the characters from U+0100 on, in byte order (openai/gpt-2 encoder.py)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def _f32(x) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


class _Symbols:
    """The symbol list both merge loops work on (llama.cpp's llm_symbol): `text` cut into UTF-8
    characters (a truncated last one kept whole), linked in order; a merged-away symbol has
    length 0."""

    def __init__(self, text: bytes):
        self._text = text
        self.start, self.length = [], []
        i = 0
        while i < len(text):
            n = min(utf8_len(text[i]), len(text) - i)
            self.start.append(i)
            self.length.append(n)
            i += n
        self.next = list(range(1, len(self.start))) + [-1]
        self.prev = list(range(-1, len(self.start) - 1))

    def text(self, k: int) -> bytes:
        return self._text[self.start[k]:self.start[k] + self.length[k]]

    def queue_pairs(self, add) -> None:
        """add(left, right) for every adjacent pair of the initial symbols."""
        for k in range(1, len(self.start)):
            add(k - 1, k)

    def join(self, left: int, right: int, add) -> None:
        """Merge `right` into `left`, then add() the two new neighbour pairs."""
        self.length[left] += self.length[right]
        self.length[right] = 0
        self.next[left] = self.next[right]
        if self.next[right] >= 0:
            self.prev[self.next[right]] = left
        add(self.prev[left], left)
        add(left, self.next[left])

    def texts(self):
        """The surviving symbols' bytes, in order."""
        k = 0 if self.start else -1
        while k != -1:
            yield self.text(k)
            k = self.next[k]

    def emit(self, ids: dict, out: list, byte_id) -> None:
        """Append each surviving symbol's id (ids: bytes -> id) to `out`; a symbol without one goes
        out byte by byte as byte_id(b), skipped where that is None (tokenizer.c's
        bf_tok_emit_symbols does the same in the kernel)."""
        for s in self.texts():
            tid = ids.get(s, -1)
            if tid >= 0:
                out.append(tid)
            else:
                out.extend(t for t in map(byte_id, s) if t is not None)


@dataclass
class Vocab:
    """A tokenizer as the kernel sees it.  pieces[i]: token i's bytes (as stored in the model:
    SentencePiece pieces with U+2581, GPT-2 pieces in the byte<->unicode alphabet); merges: GPT-2
    merge pairs (left id, right id) in rank order; ids are -1 when absent."""
    kind: int
    pieces: list
    scores: list
    types: list
    merges: list = field(default_factory=list)
    pre: int = PRE_NONE
    bos: int = NO_ID
    eos: int = NO_ID
    eot: int = NO_ID
    unk: int = NO_ID
    pad: int = NO_ID
    add_bos: bool = False
    add_space_prefix: bool = False
    stop_on_bos: bool = False
    path: str = "<memory>"

    @property
    def n_tokens(self) -> int:
        return len(self.pieces)

    # ------------------------------------------------------------------ reference tokenizer

    def _ids(self):
        if not hasattr(self, "_id_map"):
            self._id_map = {p: i for i, p in enumerate(self.pieces)}
            self._ranks = {pair: r for r, pair in enumerate(self.merges)}
            self._specials = sorted((i for i, t in enumerate(self.types) if t in (CONTROL, USER_DEFINED, UNKNOWN)),
                                    key=lambda i: (-len(self.pieces[i]), i))
        return self._id_map

    def tokenize(self, text, *, add_special: bool = True, parse_special: bool = True) -> list:
        """Token ids for `text` (str, or bytes that must be UTF-8), as the kernel computes them:
        BOS when add_bos (and add_special), special-token texts as their ids (parse_special),
        the rest by the vocabulary's own algorithm.  Raises BareflowError for invalid UTF-8."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        check_utf8(data, what=f"text for tokenizer {self.path}")
        ids = self._ids()
        if self.kind == KIND_LLAMA2C:
            return self._llama2c(data, ids)
        out = []
        if add_special and self.add_bos and self.bos >= 0:
            out.append(self.bos)
        prev_special = True
        for frag in self._fragments(data, parse_special):
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if self.kind == KIND_SPM:
                if self.add_space_prefix and prev_special:
                    frag = b" " + frag
                self._spm(frag.replace(b" ", SPM_SPACE), ids, out)
            else:
                for word in split_words(frag, self.pre):
                    self._bpe(word, ids, out)
            prev_special = False
        return out

    def _fragments(self, data, parse_special):
        """llama.cpp's tokenizer_st_partition: each special token, longest first, splits every
        remaining text fragment at its occurrences."""
        frags = [data] if data else []
        if not parse_special:
            return frags
        for sid in self._specials:
            needle = self.pieces[sid]
            if not needle:
                continue
            new = []
            for f in frags:
                if isinstance(f, int):
                    new.append(f)
                    continue
                while True:
                    at = f.find(needle)
                    if at < 0:
                        if f:
                            new.append(f)
                        break
                    if at:
                        new.append(f[:at])
                    new.append(sid)
                    f = f[at + len(needle):]
            frags = new
        return frags

    def _byte_id(self, b, ids):
        tid = ids.get(b"<0x%02X>" % b, -1)
        if tid < 0:
            tid = ids.get(bytes([b]), -1)
        return tid if tid >= 0 else self.unk

    def _spm(self, text, ids, out):
        """llama.cpp's llm_tokenizer_spm_session: greedy highest-score pair merging over UTF-8
        characters (ties: leftmost), then unknown symbols as byte tokens."""
        syms = _Symbols(text)
        heap = []

        def add(left, right):
            if left < 0 or right < 0:
                return
            s = syms.text(left) + syms.text(right)
            tid = ids.get(s, -1)
            if tid < 0:
                return
            heapq.heappush(heap, (-self.scores[tid], left, right, len(s)))

        syms.queue_pairs(add)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not syms.length[left] or not syms.length[right] or syms.length[left] + syms.length[right] != size:
                continue
            syms.join(left, right, add)
        syms.emit(ids, out, lambda b: self._byte_id(b, ids))

    def _bpe(self, word, ids, out):
        """llama.cpp's llm_tokenizer_bpe_session on one pre-tokenized word (already in the
        byte<->unicode alphabet): lowest-rank pair merging (ties: leftmost)."""
        self._ids()
        if self.pre == PRE_LLAMA3 and word in ids:          # llama.cpp's ignore_merges
            out.append(ids[word])
            return
        syms = _Symbols(word)
        heap = []

        def add(left, right):
            if left < 0 or right < 0:
                return
            a, b = ids.get(syms.text(left), -1), ids.get(syms.text(right), -1)
            if a < 0 or b < 0:
                return
            rank = self._ranks.get((a, b))
            if rank is None:
                return
            heapq.heappush(heap, (rank, left, right, syms.length[left], syms.length[right]))

        syms.queue_pairs(add)
        while heap:
            _, left, right, ln, rn = heapq.heappop(heap)
            if syms.length[left] != ln or syms.length[right] != rn or syms.next[left] != right:
                continue
            syms.join(left, right, add)
        syms.emit(ids, out, lambda b: ids.get(bytes([b])))

    def _llama2c(self, data, ids):
        """llama2.c's encode (BOS, dummy-prefix " ", one token per UTF-8 character or byte
        fallback id byte+3, best-score pair merging, leftmost on ties)."""
        tokens = [self.bos]
        if data:
            if b" " not in ids:
                raise BareflowError(f'tokenizer {self.path}: prompt needs the dummy-prefix piece " " '
                                    "but the vocab has none")
            tokens.append(ids[b" "])
        i = 0
        while i < len(data):
            n = utf8_len(data[i])
            ch = data[i:i + n]
            i += n
            if ch in ids:
                tokens.append(ids[ch])
                continue
            for b in ch:
                if b + 3 >= self.n_tokens:
                    raise BareflowError(f"tokenizer {self.path}: byte 0x{b:02X} needs fallback token {b + 3} "
                                        f"but the vocabulary has {self.n_tokens} tokens")
                tokens.append(b + 3)
        no_score = _f32(-1e10)
        while True:
            best, best_id, best_at = no_score, -1, -1
            for k in range(len(tokens) - 1):
                tid = ids.get(self.pieces[tokens[k]] + self.pieces[tokens[k + 1]], -1)
                if tid >= 0 and self.scores[tid] > best:
                    best, best_id, best_at = self.scores[tid], tid, k
            if best_at < 0:
                return tokens
            tokens[best_at:best_at + 2] = [best_id]

    def piece(self, prev: int, token: int) -> bytes:
        """The bytes `token` prints after `prev` (the kernel's bf_decode): control and unused
        tokens print nothing; byte tokens print their byte; SentencePiece "▁" is a space and the
        first piece after BOS loses its leading space; GPT-2 pieces map back through the
        byte<->unicode table."""
        t = self.types[token]
        p = self.pieces[token]
        if t in (CONTROL, UNUSED) and self.kind != KIND_LLAMA2C:
            return b""
        if self.kind == KIND_GPT2:
            if t == USER_DEFINED:
                return p
            return bytes(CHAR_TO_BYTE.get(c, 0x3F) for c in p.decode("utf-8"))
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">") and (t == BYTE or self.kind == KIND_LLAMA2C):
            try:
                return bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        if self.kind == KIND_SPM:
            p = p.replace(SPM_SPACE, b" ")
        if prev == self.bos and p.startswith(b" ") and (self.kind == KIND_LLAMA2C or self.add_space_prefix):
            p = p[1:]
        return p

    def detokenize(self, prev: int, tokens) -> bytes:
        out = []
        for t in tokens:
            out.append(self.piece(prev, t))
            prev = t
        return b"".join(out)

    def stop_ids(self) -> set:
        """Sampled ids that end generation (the kernel's rule)."""
        ids = {i for i in (self.eos, self.eot) if i >= 0}
        if self.stop_on_bos and self.bos >= 0:
            ids.add(self.bos)
        return ids


# ---------------------------------------------------------------------- UTF-8 and splitting

def utf8_len(lead: int) -> int:
    """llama.cpp's unicode_len_utf8: the sequence length a lead byte announces (1 for others)."""
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[lead >> 4]


def check_utf8(data: bytes, what: str) -> None:
    """Raise BareflowError naming `what` and the byte offset when `data` is not UTF-8 (the same
    rule as the kernel's bf_utf8_check: no overlongs, no surrogates, at most U+10FFFF)."""
    try:
        data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise BareflowError(f"{what}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}: "
                            f"{e.reason})") from None
    if b"\0" in data:
        raise BareflowError(f"{what}: contains a NUL byte at offset {data.index(0)}")


def _split_gpt2(cps, lo, hi, out_bounds):
    """llama.cpp's unicode_regex_split_custom_gpt2 over cps[lo:hi]:
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"""
    cls = unicode_tables.char_class
    L, N, W = unicode_tables.LETTER, unicode_tables.NUMBER, unicode_tables.SPACE

    def c(p):
        return cls(cps[p]) if lo <= p < hi else None
    prev = lo
    pos = lo
    while pos < hi:
        cp = cps[pos]
        if cp == 0x27 and pos + 1 < hi:
            n1 = cps[pos + 1]
            if n1 in (0x73, 0x74, 0x6D, 0x64):
                pos += 2
                out_bounds.append((prev, pos)); prev = pos
                continue
            if pos + 2 < hi and (n1, cps[pos + 2]) in ((0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C)):
                pos += 3
                out_bounds.append((prev, pos)); prev = pos
                continue
        k2 = c(pos + 1) if cp == 0x20 else c(pos)
        if k2 in (L, N) or (k2 is not None and k2 not in (L, N, W)):
            want = k2
            pos += cp == 0x20
            if want == L or want == N:
                while c(pos) == want:
                    pos += 1
            else:
                while c(pos) is not None and c(pos) not in (L, N, W):
                    pos += 1
            out_bounds.append((prev, pos)); prev = pos
            continue
        nw = 0
        while c(pos + nw) == W:
            nw += 1
        if nw > 1 and pos + nw < hi:
            pos += nw - 1
            out_bounds.append((prev, pos)); prev = pos
            continue
        if nw > 0:
            pos += nw
            out_bounds.append((prev, pos)); prev = pos
            continue
        pos += 1
        out_bounds.append((prev, pos)); prev = pos


def _split_llama3(cps, lo, hi, out_bounds):
    """llama.cpp's unicode_regex_split_custom_llama3 over cps[lo:hi] (ASCII case folding)."""
    cls = unicode_tables.char_class
    L, N, W = unicode_tables.LETTER, unicode_tables.NUMBER, unicode_tables.SPACE

    def c(p):
        return cls(cps[p]) if lo <= p < hi else None

    def cp_at(p):
        return cps[p] if lo <= p < hi else -1

    def low(x):
        return x + 32 if 0x41 <= x <= 0x5A else x
    prev = lo
    pos = lo

    def add(end):
        nonlocal prev
        if end > prev:
            out_bounds.append((prev, end))
        n = end - prev
        prev = end
        return n
    while pos < hi:
        cp = cps[pos]
        k = c(pos)
        if cp == 0x27 and pos + 1 < hi:
            n1 = low(cps[pos + 1])
            if n1 in (0x73, 0x74, 0x6D, 0x64):
                pos += add(pos + 2)
                continue
            if pos + 2 < hi and (n1, low(cps[pos + 2])) in ((0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C)):
                pos += add(pos + 3)
                continue
        if not (cp in (0x0D, 0x0A) or k == N):
            if k == L or c(pos + 1) == L:
                pos += 1
                while c(pos) == L:
                    pos += 1
                add(pos)
                continue
        if k == N:
            ini = pos
            while c(pos) == N:
                pos += 1
                if pos - ini >= 3:
                    add(pos)
                    ini = pos
            add(pos)
            continue
        k2 = c(pos + 1) if cp == 0x20 else k
        if k2 is not None and k2 not in (L, N, W) and k is not None:
            pos += cp == 0x20
            while c(pos) is not None and c(pos) not in (L, N, W):
                pos += 1
            while cp_at(pos) in (0x0D, 0x0A):
                pos += 1
            add(pos)
            continue
        nw, last_nl = 0, 0
        while c(pos + nw) == W:
            if cp_at(pos + nw) in (0x0D, 0x0A):
                last_nl = pos + nw + 1
            nw += 1
        if last_nl > 0:
            pos = last_nl
            add(pos)
            continue
        if nw > 1 and pos + nw < hi:
            pos += nw - 1
            add(pos)
            continue
        if nw > 0:
            pos += nw
            add(pos)
            continue
        pos += 1
        add(pos)


def split_words(data: bytes, pre: int) -> list:
    """Pre-tokenize UTF-8 `data` by the split `pre` names; each word comes back in GPT-2's
    byte<->unicode alphabet, UTF-8 encoded (what merges and pieces are written in)."""
    cps = [ord(ch) for ch in data.decode("utf-8")]
    ranges = [(0, len(cps))]
    if pre == PRE_SMOLLM:          # "\p{N}": every number character on its own first
        ranges, start = [], 0
        for i, cp in enumerate(cps):
            if unicode_tables.char_class(cp) == unicode_tables.NUMBER:
                if i > start:
                    ranges.append((start, i))
                ranges.append((i, i + 1))
                start = i + 1
        if start < len(cps):
            ranges.append((start, len(cps)))
    bounds = []
    for lo, hi in ranges:
        (_split_llama3 if pre == PRE_LLAMA3 else _split_gpt2)(cps, lo, hi, bounds)
    words = []
    for lo, hi in bounds:
        raw = "".join(map(chr, cps[lo:hi])).encode("utf-8")
        words.append("".join(BYTE_TO_CHAR[b] for b in raw).encode("utf-8"))
    return words


# ---------------------------------------------------------------------- building

def _fail(path, msg):
    raise BareflowError(f"tokenizer {path}: {msg}")


def from_llama2c(path, vocab_size: int | None = None) -> Vocab:
    """A Vocab from a llama2.c tokenizer.bin (read and checked by tokenizer.read_tokenizer).
    vocab_size: the model's; default: every record in the file."""
    from . import tokenizer as v1
    if vocab_size is None and Path(path).is_file():
        from . import inputs
        vocab_size = inputs.llama2c_tokenizer_records(path, Path(path).read_bytes(), v1.MAX_TOKEN_LENGTH)
    tok = v1.read_tokenizer(path, vocab_size)
    types = [NORMAL] * tok.vocab_size
    for i, p in enumerate(tok.pieces):
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            types[i] = BYTE
    return Vocab(KIND_LLAMA2C, list(tok.pieces), list(tok.scores), types, bos=1, unk=0, add_bos=True,
                 add_space_prefix=True, stop_on_bos=True, path=str(path))


@functools.lru_cache(maxsize=1)
def _reader_class():
    """gguf.GGUFReader over a plain ndarray view of its np.memmap.  The reader slices its `data`
    once or twice per metadata value; a np.memmap slice is a new memmap whose set-up
    (__array_finalize__) dominates, and SmolLM2's 98,000 vocabulary and merge strings took
    5.8 s to parse on every scons command; over the ndarray view, 2.1 s (same fields, same
    tensors, still mapped from the file, not read)."""
    import gguf
    import numpy as np

    class PlainViewReader(gguf.GGUFReader):
        @property
        def data(self):
            return self.__dict__["data"]

        @data.setter
        def data(self, value):
            self.__dict__["data"] = value.view(np.ndarray) if isinstance(value, np.memmap) else value

    return PlainViewReader


@functools.lru_cache(maxsize=4)
def _open_gguf(path: str, mtime_ns: int, size: int):
    return _reader_class()(path)


def gguf_reader(path):
    """A gguf.GGUFReader for `path`, shared while the file is unchanged: parsing a GGUF's
    metadata takes seconds (tens of thousands of vocabulary strings), and one build reads it
    for the model, the tokenizer and the chat template.  BareflowError names a bad file."""
    from . import inputs
    p = Path(path)
    if not p.is_file():
        raise BareflowError(f"GGUF {path}: file does not exist")
    st = p.stat()
    try:
        return _open_gguf(str(p.resolve()), st.st_mtime_ns, st.st_size)
    except Exception as e:      # the reader raises ValueError/IndexError/... on bad files
        raise BareflowError(inputs.gguf_unreadable(p, e)) from None


def _reader(path_or_reader):
    import gguf
    if isinstance(path_or_reader, gguf.GGUFReader):
        return path_or_reader, getattr(path_or_reader, "path", "<gguf>")
    return gguf_reader(path_or_reader), str(path_or_reader)


def from_gguf(path_or_reader) -> Vocab:
    """A Vocab from a GGUF file's tokenizer.ggml.* keys (llama.cpp's names and defaults).
    Raises BareflowError naming the file and the key for a tokenizer the kernel cannot run."""
    reader, path = _reader(path_or_reader)
    f = reader.fields

    def get(key, default=None, required=False):
        if key not in f:
            if required:
                raise BareflowError(f"GGUF {path}: key {key} is missing")
            return default
        try:
            return f[key].contents()
        except Exception as e:
            raise BareflowError(f"GGUF {path}: key {key} cannot be read ({e})") from None

    model = get("tokenizer.ggml.model", required=True)
    if model == "llama":
        kind = KIND_SPM
    elif model == "gpt2":
        kind = KIND_GPT2
    else:
        raise BareflowError(f"GGUF {path}: tokenizer.ggml.model = {model!r}; the kernel runs 'llama' "
                            "(SentencePiece) and 'gpt2' (byte-level BPE)")
    tokens = get("tokenizer.ggml.tokens", required=True)
    if not isinstance(tokens, list) or not tokens:
        raise BareflowError(f"GGUF {path}: tokenizer.ggml.tokens is not a non-empty string array")
    n = len(tokens)
    pieces = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in tokens]
    scores = get("tokenizer.ggml.scores")
    scores = [0.0] * n if scores is None else [_f32(float(s)) for s in scores]
    types = get("tokenizer.ggml.token_type")
    types = [NORMAL] * n if types is None else [int(t) for t in types]
    if len(scores) != n or len(types) != n:
        raise BareflowError(f"GGUF {path}: tokenizer.ggml.scores/token_type have {len(scores)}/{len(types)} "
                            f"entries for {n} tokens")
    pre, merges = PRE_NONE, []
    if kind == KIND_GPT2:
        pre_name = get("tokenizer.ggml.pre", "default")
        if pre_name not in GGUF_PRE:
            raise BareflowError(f"GGUF {path}: tokenizer.ggml.pre = {pre_name!r} is a pre-tokenizer the kernel "
                                f"does not implement (it runs: {', '.join(sorted(GGUF_PRE))})")
        pre = GGUF_PRE[pre_name]
        ids = {p: i for i, p in enumerate(pieces)}
        for rank, m in enumerate(get("tokenizer.ggml.merges", required=True)):
            m = m.encode("utf-8") if isinstance(m, str) else bytes(m)
            left, sep, right = m.partition(b" ")
            if not sep or left not in ids or right not in ids:
                raise BareflowError(f"GGUF {path}: tokenizer.ggml.merges[{rank}] = {m!r} is not two "
                                    "vocabulary pieces separated by one space")
            merges.append((ids[left], ids[right]))

    def special(key, default):
        v = get(f"tokenizer.ggml.{key}", default)
        if v is None:
            return NO_ID
        v = int(v)
        if not 0 <= v < n:
            raise BareflowError(f"GGUF {path}: tokenizer.ggml.{key} = {v} is not a token id (0..{n - 1})")
        return v
    spm = kind == KIND_SPM
    bos = special("bos_token_id", 1 if spm else 11)
    eos = special("eos_token_id", 2 if spm else 11)
    unk = special("unknown_token_id", 0 if spm else None)
    pad = special("padding_token_id", None)
    eot = special("eot_token_id", None)
    if eot == NO_ID:      # llama.cpp's fallback: a control token with a known end-of-turn text
        for name in (b"<|eot_id|>", b"<|im_end|>", b"<|end|>", b"<end_of_turn>", b"<|endoftext|>"):
            i = next((i for i, p in enumerate(pieces) if p == name and types[i] in (CONTROL, USER_DEFINED)), -1)
            if i >= 0:
                eot = i
                break
    add_bos = bool(get("tokenizer.ggml.add_bos_token", spm or pre == PRE_LLAMA3))
    add_space_prefix = bool(get("tokenizer.ggml.add_space_prefix", spm)) if spm else False
    vocab = Vocab(kind, pieces, scores, types, merges, pre, bos, eos, eot, unk, pad, add_bos, add_space_prefix,
                  False, path=str(path))
    validate(vocab)
    return vocab


def validate(v: Vocab) -> None:
    """The kernel's rules (src/runtime/tokfile.c), on a Vocab before it is written."""
    p = v.path
    n = v.n_tokens
    if v.kind not in KIND_NAMES:
        _fail(p, f"kind {v.kind} is not one of {sorted(KIND_NAMES)}")
    if not 1 <= n <= MAX_TOKENS:
        _fail(p, f"{n} tokens, outside 1..{MAX_TOKENS}")
    if len(v.scores) != n or len(v.types) != n:
        _fail(p, f"{n} pieces but {len(v.scores)} scores and {len(v.types)} types")
    if (v.kind == KIND_GPT2) != (v.pre != PRE_NONE) or v.pre not in PRE_NAMES:
        _fail(p, f"pre-tokenizer {v.pre} does not fit kind {KIND_NAMES[v.kind]}")
    if v.kind != KIND_GPT2 and v.merges:
        _fail(p, f"{len(v.merges)} merges for a {KIND_NAMES[v.kind]} tokenizer (only gpt2 has merges)")
    if len(v.merges) > MAX_MERGES:
        _fail(p, f"{len(v.merges)} merges, more than {MAX_MERGES}")
    seen = {}
    for i, (piece, score, t) in enumerate(zip(v.pieces, v.scores, v.types)):
        if not 1 <= len(piece) <= MAX_PIECE:
            _fail(p, f"token {i}: piece of {len(piece)} bytes, outside 1..{MAX_PIECE}")
        if not math.isfinite(score):
            _fail(p, f"token {i}: score {score} is not finite")
        if t not in TYPE_NAMES:
            _fail(p, f"token {i}: type {t} is not one of {sorted(TYPE_NAMES)}")
        if piece in seen:
            _fail(p, f"token {i}: piece {piece!r} duplicates token {seen[piece]}")
        seen[piece] = i
    for name in ("bos", "eos", "eot", "unk", "pad"):
        val = getattr(v, name)
        if not NO_ID <= val < n:
            _fail(p, f"{name} id {val} is outside -1..{n - 1}")
    for r, (a, b) in enumerate(v.merges):
        if not (0 <= a < n and 0 <= b < n):
            _fail(p, f"merge {r}: ids ({a}, {b}) outside 0..{n - 1}")
    if len(set(v.merges)) != len(v.merges):
        _fail(p, "a merge pair appears twice")
    if v.add_bos and v.bos < 0:
        _fail(p, "add_bos is set but there is no bos id")


def encode(v: Vocab) -> bytes:
    """The TOKENIZR.BIN v2 bytes for `v` (validated first; docs/tokenizer-format.md)."""
    validate(v)
    n, m = v.n_tokens, len(v.merges)
    tokens_off = HEADER_SIZE
    merges_off = tokens_off + n * TOKEN.size
    strings_off = merges_off + m * MERGE.size
    table, blob, at = [], [], 0
    for piece, score, t in zip(v.pieces, v.scores, v.types):
        table.append(TOKEN.pack(score, at, len(piece), t, 0))
        blob.append(piece)
        at += len(piece)
    strings = b"".join(blob)
    flags = (FLAG_ADD_BOS * v.add_bos) | (FLAG_ADD_SPACE_PREFIX * v.add_space_prefix) | \
            (FLAG_STOP_ON_BOS * v.stop_on_bos)
    body = b"".join(table) + b"".join(MERGE.pack(a, b) for a, b in v.merges) + strings
    size = HEADER_SIZE + len(body)
    head = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, v.kind, v.pre, n, m, max(len(x) for x in v.pieces), flags,
                       v.bos, v.eos, v.eot, v.unk, v.pad, tokens_off, merges_off, strings_off, len(strings),
                       size, 0, b"\0" * 20)
    crc = zlib.crc32(head + body)
    return head[:CRC_OFFSET] + struct.pack("<I", crc) + head[CRC_OFFSET + 4:] + body


def decode(data: bytes, path="<memory>") -> Vocab:
    """Read TOKENIZR.BIN v2 bytes, with every check the kernel makes; BareflowError names the
    file and the field at fault."""
    if len(data) < HEADER_SIZE:
        _fail(path, f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    (magic, version, hsize, kind, pre, n, m, maxlen, flags, bos, eos, eot, unk, pad, tokens_off, merges_off,
     strings_off, strings_size, size, crc, reserved) = HEADER.unpack_from(data)
    if magic != MAGIC:
        _fail(path, f"magic {magic!r} is not {MAGIC!r} (a llama2.c tokenizer.bin must be converted by the build)")
    if version != VERSION or hsize != HEADER_SIZE:
        _fail(path, f"version {version} / header size {hsize}; this build reads version {VERSION}, {HEADER_SIZE}")
    if size != len(data):
        _fail(path, f"file_size field {size} but the file has {len(data)} bytes")
    calc = zlib.crc32(data[:CRC_OFFSET] + b"\0\0\0\0" + data[CRC_OFFSET + 4:])
    if calc != crc:
        _fail(path, f"checksum 0x{crc:08x} does not match the contents (0x{calc:08x})")
    if reserved != b"\0" * 20 or flags & ~7:
        _fail(path, "reserved header bytes or flag bits are not zero")
    if not 1 <= n <= MAX_TOKENS or m > MAX_MERGES:
        _fail(path, f"n_tokens {n} / n_merges {m} out of range")
    if tokens_off != HEADER_SIZE or merges_off != tokens_off + n * TOKEN.size or \
            strings_off != merges_off + m * MERGE.size or strings_off + strings_size != size:
        _fail(path, "section offsets do not follow header, token table, merges, strings")
    pieces, scores, types = [], [], []
    for i in range(n):
        score, off, ln, t, res = TOKEN.unpack_from(data, tokens_off + i * TOKEN.size)
        if off + ln > strings_size or res:
            _fail(path, f"token {i}: piece at {off}+{ln} outside the {strings_size}-byte strings section")
        pieces.append(data[strings_off + off:strings_off + off + ln])
        scores.append(score)
        types.append(t)
    merges = [MERGE.unpack_from(data, merges_off + r * MERGE.size) for r in range(m)]
    v = Vocab(kind, pieces, scores, types, merges, pre, bos, eos, eot, unk, pad, bool(flags & FLAG_ADD_BOS),
              bool(flags & FLAG_ADD_SPACE_PREFIX), bool(flags & FLAG_STOP_ON_BOS), path=str(path))
    validate(v)
    if maxlen != max(len(x) for x in pieces):
        _fail(path, f"max_piece_len {maxlen} is not the longest piece ({max(len(x) for x in pieces)})")
    return v


def read(path) -> Vocab:
    p = Path(path)
    if not p.is_file():
        raise BareflowError(f"tokenizer {path}: file does not exist")
    return decode(p.read_bytes(), path)


def load_any(path, vocab_size: int | None = None) -> Vocab:
    """A Vocab from a GGUF file, a TOKENIZR.BIN v2 file or a llama2.c tokenizer.bin; checks that
    it has exactly `vocab_size` tokens (the model's) when given."""
    from . import inputs
    p = Path(path)
    inputs.check_file(p, "TOKENIZER")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head == b"GGUF":
        v = from_gguf(p)
    elif head == MAGIC:
        v = read(p)
    else:
        v = from_llama2c(p)
    if vocab_size is not None and v.n_tokens != vocab_size:
        raise BareflowError(f"tokenizer {path}: {v.n_tokens} tokens but the model's vocab_size is {vocab_size} "
                            "(tokenizer and model do not belong together)")
    return v


def convert_file(src, dst, vocab_size: int | None = None) -> Vocab:
    """Write TOKENIZR.BIN v2 at `dst` from `src` (GGUF, llama2.c tokenizer.bin or v2), after
    every check; nothing is written when a check fails."""
    v = load_any(src, vocab_size)
    data = encode(v)
    tmp = Path(f"{dst}.tmp")
    tmp.write_bytes(data)
    tmp.replace(dst)
    return v

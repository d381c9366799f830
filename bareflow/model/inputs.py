"""What a MODEL= or TOKENIZER= path holds, decided from the file's bytes before anything is built.

check_file() refuses a path that is not a readable, non-empty regular file with the reason a
user can act on (no such file, a quoted `~` the shell did not expand, a directory, a device, an
empty file).  model_kind() then tells a GGUF file (its 'GGUF' magic) from a llama2.c checkpoint
(a header that passes checkpoint.py's rules); a tokenizer file is named as one (MODEL and
TOKENIZER swapped), anything else as neither, so a garbage MODEL is never mistaken for a
llama2.c checkpoint that only lacks its TOKENIZER.
gguf_unreadable() turns the gguf package's failure on a damaged file into one line: which
tensor runs past the end of the file, or where the file is truncated.
"""
from __future__ import annotations

import os
import stat
import struct

from bareflow.errors import BareflowError

GGUF_MAGIC = b"GGUF"
TOKENIZR_V2_MAGIC = b"BFTK"  # tokenizer_v2.MAGIC (docs/tokenizer-format.md); tokenizer_v2 imports this module
GGUF_HEADER_BYTES = 24      # magic, uint32 version, uint64 tensor count, uint64 metadata count (GGUF spec)


def check_file(path, what: str) -> int:
    """Size in bytes of the regular, non-empty file `path`; `what` names it in errors ("MODEL",
    "TOKENIZER").  Raises BareflowError: no such file (with a hint when the path starts with a
    `~` the shell did not expand), a directory, not a regular file, or empty."""
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        hint = ""
        if path.startswith("~"):
            hint = (f" (the shell did not expand ~, as when it is quoted: give the full path, "
                    f"e.g. {what}={os.path.expanduser(path)})")
        raise BareflowError(f"{what} {path}: no such file{hint}") from None
    except OSError as e:
        raise BareflowError(f"{what} {path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BareflowError(f"{what} {path}: is a directory; give the file inside it")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a pipe" if stat.S_ISFIFO(st.st_mode) else "a special file")
        raise BareflowError(f"{what} {path}: is {kind}, not a file holding the data; give a regular file")
    if st.st_size == 0:
        raise BareflowError(f"{what} {path}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise BareflowError(f"{what} {path}: cannot be read (permission denied)")
    return st.st_size


def model_kind(path, tokenizer_given: bool = True) -> str:
    """"gguf" or "llama2.c" for MODEL=path, from the file's content (the extension is not trusted).

    A file starting with 'GGUF' is GGUF (read_gguf checks the rest).  Otherwise the first 28
    bytes must be a llama2.c header checkpoint.py accepts; its size is checked by read_config.
    Raises BareflowError naming the file: check_file()'s errors, or neither format."""
    size = check_file(path, "MODEL")
    with open(path, "rb") as f:
        head = f.read(32)       # GGUF's fixed header and llama2.c's 28-byte one
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    from . import checkpoint
    if size < checkpoint.HEADER_BYTES:
        why = f"{size} bytes, less than the {checkpoint.HEADER_BYTES}-byte llama2.c header"
    else:
        values = struct.unpack("<7i", head[:checkpoint.HEADER_BYTES])
        try:
            checkpoint._config_from_header(path, values)
            return "llama2.c"
        except BareflowError as e:
            why = "its first 28 bytes as a llama2.c header: " + str(e).split("header says ", 1)[-1]
    if _is_tokenizer(path, head, size):
        raise BareflowError(f"MODEL {path}: is a tokenizer file, not a model: were MODEL and TOKENIZER swapped?")
    tail = "" if tokenizer_given else " — a llama2.c checkpoint also needs TOKENIZER="
    raise BareflowError(f"MODEL {path}: neither a GGUF file (no 'GGUF' magic) nor a llama2.c checkpoint "
                        f"({why}){tail}")


def _is_tokenizer(path, head: bytes, size: int) -> bool:
    """True for a TOKENIZR.BIN v2 file or a llama2.c tokenizer.bin (records filling the file)."""
    from . import tokenizer
    if head[:4] == TOKENIZR_V2_MAGIC:
        return True
    if size > 64 << 20:         # far above any vocabulary; do not read a large file whole
        return False
    try:
        with open(path, "rb") as f:
            return llama2c_tokenizer_records(path, f.read(), tokenizer.MAX_TOKEN_LENGTH) > 0
    except BareflowError:
        return False


def llama2c_tokenizer_records(path, data: bytes, max_token_length: int) -> int:
    """How many (float32 score, int32 length, piece) records follow the max_token_length field
    of a llama2.c tokenizer.bin (llama2.c's run.c, build_tokenizer) when they fill the file
    exactly.  Raises BareflowError naming the file, what a tokenizer holds there and what was found,
    so a file of another kind is not reported as a vocabulary-size mismatch."""
    def refuse(found):
        raise BareflowError(f"TOKENIZER {path}: not a llama2.c tokenizer.bin, TOKENIZR.BIN v2 or GGUF file: "
                            f"{found}")
    if len(data) < 4:
        refuse(f"{len(data)} bytes, less than the int32 max_token_length a tokenizer.bin starts with")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_len <= max_token_length:
        refuse(f"a tokenizer.bin starts with max_token_length as int32 1..{max_token_length}, "
               f"this file with {max_len} (bytes {data[:4].hex(' ')})")
    off, count = 4, 0
    while off < len(data):
        if off + 8 > len(data):
            refuse(f"record {count} at byte {off}: the file ends inside its score and length")
        (n,) = struct.unpack_from("<i", data, off + 4)
        if not 0 < n <= max_len:
            refuse(f"record {count} at byte {off}: piece length {n}, expected 1..max_token_length={max_len}")
        if off + 8 + n > len(data):
            refuse(f"record {count} at byte {off}: the file ends inside its {n}-byte piece")
        off += 8 + n
        count += 1
    return count


def gguf_truncated_header(path, size: int, head: bytes) -> str | None:
    """The error for a file that has GGUF's magic but ends inside its fixed header, else None."""
    if head[:4] == GGUF_MAGIC and size < GGUF_HEADER_BYTES:
        return (f"GGUF {path}: truncated after the GGUF magic: the file has {size} bytes, a GGUF header "
                f"is {GGUF_HEADER_BYTES} (magic, version, tensor and metadata counts)")
    return None


def gguf_unreadable(path, exc: Exception) -> str:
    """One line for a GGUF file the gguf package cannot open (it fails with numpy errors on a
    truncated file): the first tensor whose bytes run past the end of the file, else that the
    metadata or tensor list is cut short or corrupt."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(GGUF_HEADER_BYTES)
    short = gguf_truncated_header(path, size, head)
    if short:
        return short
    infos = _tensor_infos(path)
    if infos is None:
        return (f"GGUF {path}: truncated or corrupt: the {size}-byte file ends inside its metadata or "
                "tensor list, or a length in them is wrong")
    for name, offset, n_bytes in infos:
        if offset + n_bytes > size:
            return (f"GGUF {path}: truncated: tensor {name} needs {n_bytes} bytes at offset {offset} "
                    f"(up to byte {offset + n_bytes}), the file has {size}")
    return f"GGUF {path}: cannot be read as GGUF ({type(exc).__name__}: {exc})"


def _tensor_infos(path):
    """[(name, absolute data offset, bytes)] from the header and tensor list, without mapping
    any tensor data; None when the metadata or tensor list itself cannot be read."""
    import gguf
    import numpy as np

    class InfoOnly(gguf.GGUFReader):
        def _build_tensors(self, start_offs, fields):
            self.infos = []
            for field in fields:
                _, name, _, dims, raw_type, offset = field.parts
                block, type_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_type[0]))]
                n_bytes = int(np.prod(dims.astype(np.int64))) * type_bytes // block
                self.infos.append((bytes(name).decode("utf-8", "replace"), int(start_offs + offset[0]), n_bytes))

    try:
        return InfoOnly(path).infos
    except Exception:       # the header or tensor list is what is damaged
        return None

"""Read `ar` archives (static libraries) in the GNU/System V format.

Only what a libc provider needs: the regular members in archive order (name, header offset,
bytes) and the archive symbol table.  Understood layout (see docs/libc.md, "The llvm-libc
provider"):

    "!<arch>\\n"
    repeated: 60-byte header  name[16] date[12] uid[6] gid[6] mode[8] size[10] "`\\n"
              size bytes of data, then one "\\n" when size is odd (members start at even offsets)

Special member names: "/" is the symbol table (big-endian u32 count, count u32 header offsets,
count NUL-terminated names), "/SYM64/" the same with u64 numbers, "//" the long-name table
("name/\\n" entries), and "/<decimal>" a long name at that offset in it.  A regular name ends at
its "/".  Thin archives and BSD "#1/<len>" names are refused with a clear error rather than
half-read.  Member names may repeat (llvm-libc has two `file.cpp.o`), so a member is
identified by its position or its header offset, never by name alone.
"""
import struct
from dataclasses import dataclass
from pathlib import Path

from bareflow.errors import BareflowError

MAGIC = b"!<arch>\n"
THIN_MAGIC = b"!<thin>\n"
HEADER_SIZE = 60
HEADER_END = b"`\n"


@dataclass(frozen=True)
class Member:
    index: int          # position among the regular members, 0-based
    name: str
    offset: int         # offset of the member's header: what the symbol table refers to
    data: bytes
    mode: int


@dataclass
class Archive:
    what: str
    members: list               # [Member] in archive order
    symbols: list               # [(symbol, header offset)] in symbol-table order

    def names(self):
        return [m.name for m in self.members]

    def member_at(self, offset):
        for member in self.members:
            if member.offset == offset:
                return member
        raise BareflowError(f"{self.what}: no member header at offset {offset}")

    def symbol_members(self):
        """{symbol: [Member, ...]} from the symbol table (a weak symbol may be in several)."""
        by_offset = {m.offset: m for m in self.members}
        table = {}
        for symbol, offset in self.symbols:
            if offset not in by_offset:
                raise BareflowError(f"{self.what}: symbol table entry {symbol!r} points at offset "
                                    f"{offset}, where no member starts")
            table.setdefault(symbol, []).append(by_offset[offset])
        return table


def read_archive(path):
    """Parse the archive at `path`; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BareflowError(f"{path}: cannot read archive: {exc.strerror}") from None
    return parse_archive(data, str(path))


def parse_archive(data, what="archive"):
    """Parse archive bytes; `what` names the archive in errors."""
    if data.startswith(THIN_MAGIC):
        raise BareflowError(f"{what}: thin archive (members are stored outside it); not supported")
    if not data.startswith(MAGIC):
        raise BareflowError(f"{what}: not an ar archive (first bytes {data[:8]!r}, expected {MAGIC!r})")
    members, symbols, long_names = [], [], None
    pos = len(MAGIC)
    while pos < len(data):
        if pos + HEADER_SIZE > len(data):
            raise BareflowError(f"{what}: truncated member header at offset {pos} "
                                f"({len(data) - pos} bytes left, a header is {HEADER_SIZE})")
        header = data[pos:pos + HEADER_SIZE]
        if header[58:60] != HEADER_END:
            raise BareflowError(f"{what}: bad member header at offset {pos} "
                                f"(ends with {header[58:60]!r}, expected {HEADER_END!r})")
        raw_name = header[0:16].decode("ascii", "replace").rstrip(" ")
        size = _decimal(header[48:58], what, pos, "size")
        start = pos + HEADER_SIZE
        if start + size > len(data):
            raise BareflowError(f"{what}: member {raw_name!r} at offset {pos} claims {size} bytes "
                                f"but only {len(data) - start} remain")
        body = data[start:start + size]
        if raw_name == "/":
            symbols += _symbol_table(body, 4, what, pos)
        elif raw_name == "/SYM64/":
            symbols += _symbol_table(body, 8, what, pos)
        elif raw_name == "//":
            long_names = body
        else:
            name = _member_name(raw_name, long_names, what, pos)
            mode = int(header[40:48].decode("ascii", "replace").strip() or "0", 8)
            members.append(Member(len(members), name, pos, body, mode))
        pos = start + size + (size & 1)
    return Archive(what, members, symbols)


def _decimal(field, what, pos, label):
    text = field.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise BareflowError(f"{what}: member header at offset {pos}: {label} field {text!r} is not a number")
    return int(text)


def _member_name(raw, long_names, what, pos):
    if raw.startswith("#1/"):
        raise BareflowError(f"{what}: member at offset {pos} has a BSD-style name {raw!r}; "
                            "only GNU/System V archives are supported")
    if raw.startswith("/") and raw[1:].isdigit():
        if long_names is None:
            raise BareflowError(f"{what}: member at offset {pos} names long name {raw!r} "
                                "but the archive has no '//' long-name table before it")
        start = int(raw[1:])
        end = long_names.find(b"/\n", start)
        if start >= len(long_names) or end < 0:
            raise BareflowError(f"{what}: member at offset {pos}: long name {raw!r} is outside the "
                                f"{len(long_names)}-byte long-name table")
        return long_names[start:end].decode("utf-8", "replace")
    if raw.endswith("/"):
        return raw[:-1]
    return raw     # an archive writer that does not terminate names (old SysV, BSD short names)


def _symbol_table(body, width, what, pos):
    fmt = ">I" if width == 4 else ">Q"
    if len(body) < width:
        raise BareflowError(f"{what}: symbol table at offset {pos} is truncated")
    (count,) = struct.unpack_from(fmt, body, 0)
    names_start = width * (count + 1)
    if names_start > len(body):
        raise BareflowError(f"{what}: symbol table at offset {pos} lists {count} symbols "
                            f"but holds only {len(body)} bytes")
    offsets = struct.unpack_from(f">{count}{fmt[1]}", body, width)
    names = body[names_start:].split(b"\0")
    if len(names) < count + 1:     # every name is NUL-terminated
        raise BareflowError(f"{what}: symbol table at offset {pos} has {count} offsets "
                            f"but only {len(names) - 1} names")
    return [(names[i].decode("utf-8", "replace"), offsets[i]) for i in range(count)]

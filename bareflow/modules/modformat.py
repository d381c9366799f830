"""The BFMD module file: one layer, one tier, one ISA level (docs/module-format.md).

`pack()` links a tier's ELF object into a single position-independent image.  PC-relative
references inside the module are resolved here, at build time; absolute pointers become
RELATIVE64 records; calls to kernel exports go through a stub and a slot filled by an IMPORT64
record.  The kernel loader is left with two relocation kinds and nothing to guess.
"""
import struct
from dataclasses import dataclass

from bareflow.modules import elfcheck
from bareflow.modules.elfcheck import R_X86_64_64
from bareflow.core.checksum import crc32_with_field_zeroed
from bareflow.errors import BareflowError
from bareflow.model.layers import LAYER_NAME
from bareflow.tiers.levels import ISA_LEVELS, TIERS

MAGIC = b"BFMD"
VERSION = 1
HEADER = struct.Struct("<4sHH16sBBHIIIIIIIII")
assert HEADER.size == 64
RELOC = struct.Struct("<IHHq")
IMPORT = struct.Struct("<32s")
RELATIVE64, IMPORT64 = 1, 2
MAX_IMAGE = 16 << 20
MAX_IMPORTS = 256
ENTRY_SYMBOL = "bf_layer_entry"
LAYER_ABI_VERSION = 2           # BF_LAYER_ABI_VERSION in src/include/bareflow/layer_abi.h
_STUB = b"\xff\x25"             # jmp *disp32(%rip)


def _align(value, alignment):
    return (value + alignment - 1) & ~(alignment - 1)


def file_name(layer, tier):
    """The module's path on the FAT16 partition."""
    return f"/MODULES/{layer.upper()}.{tier}"


def pack(obj_bytes, *, layer, tier, isa, exports):
    """Turn a tier object into BFMD bytes; `exports` is the set of functions the kernel lends."""
    what = f"module {layer} tier {tier}"
    if not LAYER_NAME.match(layer) or len(layer) > 8:
        raise BareflowError(f"{what}: layer name must be 1-8 characters [a-z0-9_] to fit an 8.3 file name")
    obj = elfcheck.read_object(obj_bytes, what)
    entry = obj.defined(ENTRY_SYMBOL)
    if entry is None or entry.kind != "STT_FUNC":
        raise BareflowError(f"{what}: does not define the function {ENTRY_SYMBOL}")

    # Place sections: code, then read-only data, then data; bss and import slots are the zero tail.
    order = sorted(obj.sections.values(),
                   key=lambda s: (s.nobits, not s.executable, s.writable, s.index))
    base, cursor, text_end = {}, 0, 0
    imports = sorted({r.symbol.name for r in obj.relocs if r.symbol.section == "UND"})
    for name in imports:
        if name not in exports:
            raise BareflowError(f"{what}: unresolved symbol {name!r}: no libc provider or runtime helper "
                                "defines it")
    if len(imports) > MAX_IMPORTS:
        raise BareflowError(f"{what}: {len(imports)} imports, at most {MAX_IMPORTS}")
    stub_at = {}
    for sec in order:
        if not sec.executable and text_end == 0 and cursor:
            text_end = cursor
        if not sec.executable and not stub_at and imports:
            cursor = _align(cursor, 16)
            for name in imports:
                stub_at[name] = cursor
                cursor += 8
            text_end = cursor
        cursor = _align(cursor, sec.align)
        base[sec.index] = cursor
        cursor += sec.size
    if not text_end:
        text_end = cursor
    if imports and not stub_at:        # code only: stubs follow it
        cursor = _align(cursor, 16)
        for name in imports:
            stub_at[name] = cursor
            cursor += 8
        text_end = cursor
    file_image_size = max([base[s.index] + s.size for s in order if not s.nobits] +
                          [stub_at[n] + 8 for n in imports] + [0])
    cursor = _align(max(cursor, file_image_size), 8)
    slot_at = {}
    for name in imports:
        slot_at[name] = cursor
        cursor += 8
    image_size = cursor
    if image_size > MAX_IMAGE:
        raise BareflowError(f"{what}: image of {image_size} bytes exceeds {MAX_IMAGE}")

    image = bytearray(file_image_size)
    for sec in order:
        if not sec.nobits:
            image[base[sec.index]:base[sec.index] + sec.size] = sec.data
    import_index = {name: i for i, name in enumerate(imports)}
    records = []
    for name in imports:
        disp = slot_at[name] - (stub_at[name] + 6)
        image[stub_at[name]:stub_at[name] + 8] = _STUB + struct.pack("<i", disp) + b"\xcc\xcc"
        records.append((slot_at[name], IMPORT64, import_index[name], 0))

    for rel in obj.relocs:
        place = base[rel.section] + rel.offset
        sym = rel.symbol
        sym_desc = sym.name or f"section {sym.section}"
        if rel.type not in elfcheck.SUPPORTED_RELOCS:
            raise BareflowError(f"{what}: unsupported relocation {elfcheck.reloc_name(rel.type)} against "
                                f"symbol {sym_desc!r} (supported: {', '.join(elfcheck.SUPPORTED_RELOCS.values())})")
        if sym.section == "UND":
            if rel.type == R_X86_64_64:
                records.append((place, IMPORT64, import_index[sym.name], rel.addend))
                continue
            target = stub_at[sym.name]
        elif isinstance(sym.section, int) and sym.section in base:
            target = base[sym.section] + sym.value
        else:
            raise BareflowError(f"{what}: symbol {sym_desc!r} is in a section that is not loaded")
        if rel.type == R_X86_64_64:
            value = target + rel.addend
            if not 0 <= value <= image_size:
                raise BareflowError(f"{what}: absolute reference to {sym_desc!r} points outside the image")
            records.append((place, RELATIVE64, 0, value))
        else:  # PC32 / PLT32: position-independent inside the image, resolved now
            value = target + rel.addend - place
            if not -(1 << 31) <= value < (1 << 31):
                raise BareflowError(f"{what}: PC-relative reference to {sym_desc!r} out of range")
            if place + 4 > file_image_size:
                raise BareflowError(f"{what}: relocation at {place:#x} patches bytes outside the stored image")
            image[place:place + 4] = struct.pack("<i", value)
    records.sort()

    entry_offset = base[entry.section] + entry.value
    body = bytes(image) + b"".join(RELOC.pack(*r) for r in records) + \
        b"".join(IMPORT.pack(n.encode()) for n in imports)
    file_size = HEADER.size + len(body)
    align = max([16] + [s.align for s in order])
    if align > 4096:            # the loader aligns images to at most 4096: the section would drift
        worst = max(order, key=lambda s: s.align)
        raise BareflowError(f"{what}: section {worst.name} needs {align}-byte alignment; "
                            "module images are aligned to at most 4096 bytes")
    header = HEADER.pack(MAGIC, VERSION, HEADER.size, layer.encode(), TIERS.index(tier),
                         ISA_LEVELS[isa], LAYER_ABI_VERSION, image_size, file_image_size, align,
                         entry_offset, text_end, len(records), len(imports), file_size, 0)
    crc = crc32_with_field_zeroed(header + body, 60)
    return header[:-4] + struct.pack("<I", crc) + body


@dataclass
class ModuleInfo:
    layer: str
    tier: str
    isa: str
    image_size: int
    file_image_size: int
    text_size: int
    entry_offset: int
    relocs: list
    imports: list


def parse(data, what="module file"):
    """Check BFMD bytes against every rule the kernel loader applies; return what they hold."""
    if len(data) < HEADER.size:
        raise BareflowError(f"{what}: {len(data)} bytes, shorter than the 64-byte header")
    (magic, version, hsize, layer, tier, isa, abi, image_size, file_image_size, align, entry,
     text_size, n_relocs, n_imports, file_size, crc) = HEADER.unpack_from(data)
    checks = [
        (magic == MAGIC, f"bad magic {magic!r}"),
        (version == VERSION, f"version {version}, expected {VERSION}"),
        (hsize == HEADER.size, f"header_size {hsize}"),
        (tier < len(TIERS), f"tier code {tier}"),
        (isa < len(ISA_LEVELS), f"isa code {isa}"),
        (abi == LAYER_ABI_VERSION, f"abi_version {abi}, expected {LAYER_ABI_VERSION}"),
        (file_image_size <= image_size <= MAX_IMAGE, f"image_size {image_size}"),
        (align & (align - 1) == 0 and 16 <= align <= 4096, f"align {align}"),
        (text_size <= file_image_size, f"text_size {text_size}"),
        (entry < text_size, f"entry_offset {entry}"),
        (n_imports <= MAX_IMPORTS, f"n_imports {n_imports}"),
        (file_size == len(data) == HEADER.size + file_image_size + RELOC.size * n_relocs
         + IMPORT.size * n_imports, f"file_size {file_size} (file has {len(data)})"),
    ]
    for ok, message in checks:
        if not ok:
            raise BareflowError(f"{what}: {message}")
    if crc32_with_field_zeroed(data, 60) != crc:
        raise BareflowError(f"{what}: crc32 mismatch")
    name = layer.rstrip(b"\0").decode("ascii", "replace")
    pos = HEADER.size + file_image_size
    relocs = [RELOC.unpack_from(data, pos + i * RELOC.size) for i in range(n_relocs)]
    pos += n_relocs * RELOC.size
    imports = [IMPORT.unpack_from(data, pos + i * IMPORT.size)[0].rstrip(b"\0").decode()
               for i in range(n_imports)]
    for offset, kind, index, addend in relocs:
        if offset + 8 > image_size or kind not in (RELATIVE64, IMPORT64) or \
                (kind == IMPORT64 and index >= n_imports) or \
                (kind == RELATIVE64 and not 0 <= addend <= image_size):
            raise BareflowError(f"{what}: bad relocation at offset {offset:#x}")
    return ModuleInfo(name, TIERS[tier], list(ISA_LEVELS)[isa], image_size, file_image_size,
                      text_size, entry, relocs, imports)

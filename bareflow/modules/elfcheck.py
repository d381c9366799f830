"""Read tier objects (ELF64 relocatable, x86-64) with pyelftools.

What the rest of the build needs from an object: its allocated sections, its relocations, the
symbols it defines and the symbols it leaves undefined.  Anything outside the small subset the
module format supports is reported here, naming the module, tier and symbol.
"""
import io
from dataclasses import dataclass, field

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_RELOC_TYPE_x64

from bareflow.errors import BareflowError

R_X86_64_64 = ENUM_RELOC_TYPE_x64["R_X86_64_64"]
R_X86_64_PC32 = ENUM_RELOC_TYPE_x64["R_X86_64_PC32"]
R_X86_64_PLT32 = ENUM_RELOC_TYPE_x64["R_X86_64_PLT32"]
SUPPORTED_RELOCS = {R_X86_64_64: "R_X86_64_64", R_X86_64_PC32: "R_X86_64_PC32",
                    R_X86_64_PLT32: "R_X86_64_PLT32"}
_RELOC_NAMES = {v: k for k, v in ENUM_RELOC_TYPE_x64.items()}


@dataclass
class Section:
    index: int
    name: str
    data: bytes          # empty for NOBITS
    size: int
    align: int
    executable: bool
    writable: bool
    nobits: bool


@dataclass
class Symbol:
    name: str
    section: object      # section index (int), "UND", "ABS" or "COMMON"
    value: int
    kind: str            # STT_FUNC, STT_OBJECT, ...
    binding: str
    size: int = 0


@dataclass
class Reloc:
    section: int         # index of the section the relocation patches
    offset: int
    type: int
    symbol: Symbol
    addend: int


@dataclass
class ObjectFile:
    what: str
    sections: dict = field(default_factory=dict)   # index -> Section (allocated ones only)
    symbols: list = field(default_factory=list)
    relocs: list = field(default_factory=list)

    def defined(self, name):
        for sym in self.symbols:
            if sym.name == name and isinstance(sym.section, int):
                return sym
        return None

    def global_definitions(self):
        return {s.name: s for s in self.symbols
                if isinstance(s.section, int) and s.binding in ("STB_GLOBAL", "STB_WEAK") and s.name}

    def undefined_names(self):
        return sorted({s.name for s in self.symbols if s.section == "UND" and s.name})


def read_object(data, what):
    """Parse ELF relocatable bytes; `what` names the object in errors ("module rmsnorm tier O2")."""
    try:
        elf = ELFFile(io.BytesIO(data))
    except Exception as exc:  # pyelftools raises its own and struct errors on garbage
        raise BareflowError(f"{what}: not an ELF object: {exc}") from exc
    if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64" or elf["e_type"] != "ET_REL":
        raise BareflowError(f"{what}: expected an x86-64 ELF64 relocatable object, got "
                            f"class {elf.elfclass}, {elf['e_machine']}, {elf['e_type']}")
    obj = ObjectFile(what)
    for index, sec in enumerate(elf.iter_sections()):
        if not sec["sh_flags"] & SH_FLAGS.SHF_ALLOC:
            continue
        nobits = sec["sh_type"] == "SHT_NOBITS"
        obj.sections[index] = Section(
            index=index, name=sec.name, data=b"" if nobits else sec.data(), size=sec["sh_size"],
            align=max(1, sec["sh_addralign"]), executable=bool(sec["sh_flags"] & SH_FLAGS.SHF_EXECINSTR),
            writable=bool(sec["sh_flags"] & SH_FLAGS.SHF_WRITE), nobits=nobits)
    symtab = elf.get_section_by_name(".symtab")
    table = []
    if symtab is not None:
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            section = {"SHN_UNDEF": "UND", "SHN_ABS": "ABS", "SHN_COMMON": "COMMON"}.get(shndx, shndx)
            table.append(Symbol(sym.name, section, sym["st_value"], sym["st_info"]["type"],
                                sym["st_info"]["bind"], sym["st_size"]))
    obj.symbols = table
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_REL":
            raise BareflowError(f"{what}: REL relocations in {sec.name} are not supported (expected RELA)")
        if sec["sh_type"] != "SHT_RELA":
            continue
        target = sec["sh_info"]
        if target not in obj.sections:
            continue  # relocations of non-allocated sections (debug info) do not reach the image
        for rel in sec.iter_relocations():
            obj.relocs.append(Reloc(target, rel["r_offset"], rel["r_info_type"],
                                    table[rel["r_info_sym"]], rel["r_addend"]))
    for sym in table:
        if sym.section == "COMMON":
            raise BareflowError(f"{what}: common symbol {sym.name!r} is not supported (compile with -fno-common)")
    return obj


def reloc_name(rtype):
    return _RELOC_NAMES.get(rtype, f"type {rtype}")

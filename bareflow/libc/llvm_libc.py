"""Plugin: LLVM's libc from Debian (libllvmlibc-22-dev) as a second libc provider.

Debian ships llvm-libc as one static archive of x86-64 objects built for a Linux *host*: in
"overlay" mode errno is the C library's (`__errno_location`), everything is compiled with the
stack protector (the canary is read from %fs:0x28), and the maths functions were compiled for
a CPU with AVX2 and FMA.  BareFlow's runtime supplies the first two in every image (a per-core
TCB at FS_BASE with the canary, `__errno_location`, `__stack_chk_fail`: src/runtime/tcb.c), so
every function whose members pass a static check is handed out: ELF layout (placed sections,
no thread-locals or constructors), relocation types a static link resolves, external symbols
only those the program supplies, and machine code (machine_code.py: no system call or
privileged instruction, %fs only at the TCB's slots, an ISA level every level of the build
has).  Anything else is refused with the reason, naming the symbol (docs/libc.md, "The
llvm-libc provider").

By default the provider is asked after the project's bareflow-libc (priority 100 > 50), so it
changes nothing unless a build needs a function the project libc lacks.  LIBC_PREFER=llvm-libc
puts it first.  When the archive is missing it registers as unavailable and supplies nothing.
"""
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_RELOC_TYPE_x64

from bareflow import hookimpl

from bareflow.libc import arfile, machine_code
from bareflow.errors import BareflowError
from bareflow.libc.selection import LibcProvider

NAME = "llvm-libc"
LLVM_MAJOR = 22           # the JIT's LLVM release (bareflow/kernel/llvmjit.py): one LLVM for both
PACKAGE = f"libllvmlibc-{LLVM_MAJOR}-dev"
PRIORITY = 100            # after bareflow-libc (50): only fills the project libc's gaps
PREFERRED_PRIORITY = 10   # LIBC_PREFER=llvm-libc: asked before bareflow-libc


def archive_candidates():
    """Where the archive may be: installed, or unpacked by tools/setup.sh into the LLVM cache."""
    from bareflow.kernel import llvmjit
    return [Path(prefix) / "lib" / "libllvmlibc.a" for prefix in llvmjit.candidates()]


def find_archive():
    """The first archive that exists, else the installed path (which then reports it missing)."""
    found = [p for p in archive_candidates() if p.is_file()]
    return (found or archive_candidates())[0]


ARCHIVE = find_archive()

# What the program itself supplies to llvm-libc's code, in every image (src/runtime/tcb.c):
# external symbols a member may leave undefined.
PROGRAM_SUPPLIED = {
    "__errno_location": "errno, one per core, in the core's TCB",
    "__stack_chk_fail": "stops the run naming itself when a stack-protector canary was overwritten",
}

# Relocations a static link resolves without a GOT or PLT section (kernel.ld places neither).
_STATIC_RELOCS = {ENUM_RELOC_TYPE_x64[n] for n in (
    "R_X86_64_64", "R_X86_64_PC32", "R_X86_64_PLT32", "R_X86_64_32", "R_X86_64_32S", "R_X86_64_PC64")}
_RELOC_NAMES = {v: k for k, v in ENUM_RELOC_TYPE_x64.items()}
_PLACED_SECTION = re.compile(r"\.(text|rodata|data|bss)(\.|$)")
_CONSTRUCTOR_SECTION = re.compile(r"\.(init_array|fini_array|preinit_array|ctors|dtors)(\.|$)")
# Bump when what a member summary holds changes: the on-disk summaries are keyed by it.
SUMMARY_VERSION = 1

_settings = {"prefer": False, "isa": "x86-64"}    # from bareflow_configure, per build


def build_level(isa_setting):
    """The lowest ISA level (index into machine_code.LEVEL_NAMES) among those ISA lists: the
    kernel's libc serves every level, so it may use only what the lowest one has."""
    from bareflow.tiers.levels import ISA_LEVELS
    levels = [name.strip() for name in str(isa_setting).split(",") if name.strip()]
    known = [ISA_LEVELS.get(n) for n in levels]
    return min(known) if levels and None not in known else 0


_index_cache = {}                                  # (path, size, mtime) -> _Index


@dataclass
class _Member:
    """What one archive member defines, needs and contains (hazards found statically)."""
    index: int
    name: str
    data: bytes = field(repr=False)
    defines: dict = field(default_factory=dict)     # symbol -> (STT_*, STB_*)
    undefined: set = field(default_factory=set)
    hazards: list = field(default_factory=list)     # ELF layout, relocations, machine code
    level: int = 0                                  # ISA level its instructions need
    level_example: str = ""

    @property
    def label(self):
        return f"{self.name} (member {self.index})"


class _Index:
    """Every member of the archive with its global definitions and hazards, parsed once per
    process; the per-member summaries (the slow part: ELF parsing, relocations, disassembly)
    are kept in <cache root>/llvm-libc keyed by the archive's SHA-256."""

    def __init__(self, path):
        self.path = path
        archive = arfile.read_archive(path)
        summaries = _summaries(path, archive)
        self.members = [_Member(m.index, m.name, m.data, **summary)
                        for m, summary in zip(archive.members, summaries)]
        self.owner = {}       # symbol -> member defining it (a strong definition wins over weak)
        for member in self.members:
            for sym, (_kind, bind) in member.defines.items():
                current = self.owner.get(sym)
                if current is None or (bind == "STB_GLOBAL" and current.defines[sym][1] != "STB_GLOBAL"):
                    self.owner[sym] = member

    def functions(self):
        """C-named (unmangled) global functions: what a caller outside the archive can ask for."""
        return sorted(s for s, m in self.owner.items()
                      if not s.startswith("_Z") and m.defines[s] == ("STT_FUNC", "STB_GLOBAL"))

    def closure(self, symbol):
        """(members, external symbols): what linking `symbol` pulls in, following undefined
        symbols through the archive; external ones are those no member defines."""
        seen, external, todo = [], set(), [self.owner[symbol]]
        while todo:
            member = todo.pop(0)
            if member in seen:
                continue
            seen.append(member)
            for sym in sorted(member.undefined):
                owner = self.owner.get(sym)
                if owner is None:
                    external.add(sym)
                elif owner not in seen:
                    todo.append(owner)
        return seen, external

    def write_closure(self, symbol, directory):
        """(object file paths, external symbols): the members closure(symbol) pulls in, written
        to `directory` as <member index>.o (for tests and tools that link them outside SCons)."""
        members, external = self.closure(symbol)
        paths = []
        for member in members:
            path = Path(directory) / f"{member.index}.o"
            path.write_bytes(member.data)
            paths.append(path)
        return paths, external


def _summaries(path, archive):
    """[{defines, undefined, hazards, level, level_example}] per member, from the disk cache or
    computed (and then stored; a cache that cannot be written is only skipped)."""
    from bareflow.core.paths import cache_root
    digest = hashlib.sha256(Path(path).read_bytes())
    for source in (__file__, machine_code.__file__):
        digest.update(Path(source).read_bytes())
    cache = cache_root() / "llvm-libc" / f"{digest.hexdigest()[:24]}-v{SUMMARY_VERSION}.json"
    try:
        rows = json.loads(cache.read_text())
        if len(rows) == len(archive.members):
            for row in rows:
                row["defines"] = {k: tuple(v) for k, v in row["defines"].items()}
                row["undefined"] = set(row["undefined"])
            return rows
    except (OSError, ValueError, KeyError, TypeError):
        pass
    elves = [_scan_member(member, path) for member in archive.members]     # names a bad member
    code = machine_code.scan_archive(path)
    if [c.name for c in code] != [m.name for m in archive.members]:
        raise BareflowError(f"{path}: objdump lists other members than the archive holds")
    rows = []
    for elf, scanned in zip(elves, code):
        rows.append({"defines": elf.defines, "undefined": elf.undefined,
                     "hazards": list(dict.fromkeys(elf.hazards + _relocation_hazards(elf) + scanned.hazards)),
                     "level": scanned.level, "level_example": scanned.level_example})
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([dict(r, undefined=sorted(r["undefined"])) for r in rows]))
        tmp.replace(cache)
    except OSError:
        pass
    return rows


def _scan_member(member, path):
    what = f"{path}({member.name}, member {member.index})"
    try:
        elf = ELFFile(io.BytesIO(member.data))
    except Exception as exc:  # pyelftools raises several types on garbage
        raise BareflowError(f"{what}: not an ELF object: {exc}") from exc
    if elf["e_machine"] != "EM_X86_64" or elf["e_type"] != "ET_REL" or elf.elfclass != 64:
        raise BareflowError(f"{what}: not an x86-64 ELF64 relocatable object")
    scanned = _Member(member.index, member.name, member.data)
    for sec in elf.iter_sections():
        flags = sec["sh_flags"]
        if flags & SH_FLAGS.SHF_TLS:
            scanned.hazards.append(f"thread-local section {sec.name}")
        elif not flags & SH_FLAGS.SHF_ALLOC:
            continue
        elif _CONSTRUCTOR_SECTION.match(sec.name):
            scanned.hazards.append(f"constructor section {sec.name} (nothing runs it)")
        elif not _PLACED_SECTION.match(sec.name):
            scanned.hazards.append(f"section {sec.name}, which kernel.ld does not place")
    symtab = elf.get_section_by_name(".symtab")
    for sym in (symtab.iter_symbols() if symtab else []):
        kind, bind, shndx = sym["st_info"]["type"], sym["st_info"]["bind"], sym["st_shndx"]
        if kind == "STT_TLS" and shndx != "SHN_UNDEF":
            scanned.hazards.append(f"thread-local variable {sym.name}")
        if not sym.name:
            continue
        if shndx == "SHN_UNDEF":
            scanned.undefined.add(sym.name)
        elif bind in ("STB_GLOBAL", "STB_WEAK"):
            scanned.defines[sym.name] = (kind, bind)
    scanned.undefined -= set(scanned.defines)
    functions = sorted(s for s, kind_bind in scanned.defines.items()
                       if not s.startswith("_Z") and kind_bind == ("STT_FUNC", "STB_GLOBAL"))
    if len(functions) > 1:
        scanned.hazards.append(f"it defines several C functions ({', '.join(functions)}), so "
                               "handing it out for one would clash with another provider's others")
    return scanned


def _relocation_hazards(member):
    """Relocation types a freestanding static link cannot take (GOT, PLT, TLS)."""
    elf = ELFFile(io.BytesIO(member.data))
    bad = set()
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_RELA":
            bad |= {r["r_info_type"] for r in sec.iter_relocations()} - _STATIC_RELOCS
        elif sec["sh_type"] == "SHT_REL":
            bad.add("REL")
    return [f"relocation {_RELOC_NAMES.get(t, t)}" for t in sorted(bad, key=str)]


def _availability(path):
    """None when `path` looks like an ar archive, else why the provider is unavailable."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(arfile.MAGIC))
    except FileNotFoundError:
        return f"{path} not found (install Debian's {PACKAGE})"
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    if magic != arfile.MAGIC:
        return f"{path} is not an ar archive"
    return None


def load_index(path=ARCHIVE):
    """The parsed archive at `path`, cached per process (re-read when the file changes)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _index_cache:
        _index_cache.clear()
        _index_cache[key] = _Index(Path(path))
    return _index_cache[key]


class LlvmLibc(LibcProvider):
    """Every function of Debian's llvm-libc archive that passes the static checks, handed out as
    its member objects."""
    name = NAME
    kind = "object"

    def __init__(self, archive=None, settings=None):
        self.archive = Path(archive or ARCHIVE)
        self.settings = _settings if settings is None else settings
        self._checked = None        # (isa, {symbol: origin}, {symbol: reason})
        self.unavailable = _availability(self.archive)
        self.files = [str(self.archive)]

    @property
    def priority(self):
        return PREFERRED_PRIORITY if self.settings["prefer"] else PRIORITY

    @property
    def description(self):
        if self.unavailable:
            return f"LLVM's libc from Debian's {PACKAGE}: UNAVAILABLE, {self.unavailable}; supplies nothing"
        return (f"LLVM's libc from Debian's {PACKAGE} ({self.archive}): every function that passes the "
                f"static checks (LIBC_PREFER={NAME} asks it before bareflow-libc)")

    @property
    def capabilities(self):
        if self.unavailable:
            return {}
        try:
            offered, refused = self._check()[1:]
        except BareflowError as exc:
            return {"unusable": str(exc)}
        functions = [s for s in sorted(offered) if not s.startswith("_Z")]
        return {f"offered (ISA={self.settings['isa']})": f"{len(functions)} functions, e.g. "
                + " ".join(f for f in ("memcpy", "strlen", "sqrtf", "qsort", "expf", "powf", "sinf", "cosf")
                           if f in offered),
                "refused": f"{len(refused)} functions, each with its reason (docs/libc.md)",
                "the program supplies": ", ".join(sorted(PROGRAM_SUPPLIED)) + " and the TCB at FS_BASE"}

    def dependencies(self):
        return [] if self.unavailable else [self.archive]

    def index(self):
        if self.unavailable:
            raise BareflowError(f"libc provider {NAME} is unavailable: {self.unavailable}")
        return load_index(self.archive)

    def _check(self):
        isa = self.settings["isa"]
        if self._checked is None or self._checked[0] != isa:
            index = self.index()
            level = build_level(isa)
            offered, refused = {}, {}
            for sym in index.functions():
                reasons = self._hazards(index, sym, level, isa)
                if reasons:
                    refused[sym] = "; ".join(reasons)
                    continue
                members, _ = index.closure(sym)
                offered[sym] = f"{self.archive.name}({members[0].name})"
                for member in members:        # internal (C++-mangled) symbols the closure needs
                    for other in member.defines:
                        if other.startswith("_Z") and index.owner[other] is member:
                            offered.setdefault(other, f"{self.archive.name}({member.name})")
            self._checked = (isa, offered, refused)
        return self._checked

    @staticmethod
    def _hazards(index, sym, level=0, isa="x86-64"):
        """Why `sym` cannot run in a BareFlow image built for `isa` (lowest level `level`), found
        from its closure's objects alone; [] when it can."""
        if sym not in index.owner:
            return [f"{index.path} does not define it"]
        members, external = index.closure(sym)
        reasons = []
        host = sorted(external - set(PROGRAM_SUPPLIED))
        if host:
            reasons.append("it needs symbols from the host's C library that BareFlow does not supply: "
                           + ", ".join(host))
        needs = max(members, key=lambda m: m.level)
        if needs.level > level:
            reasons.append(f"its code needs {machine_code.level_name(needs.level)} (e.g. "
                           f"`{needs.level_example}` in {needs.label}), but the build's lowest ISA level "
                           f"is {machine_code.level_name(level)} (ISA={isa}); allowed only when every ISA "
                           f"level is {machine_code.level_name(needs.level)} or above")
        for position, member in enumerate(members):
            found = list(member.hazards)
            if position:      # reached through an internal symbol, so a C name it defines
                              # is a second definition the selection does not know about
                found += [f"it also defines {other}, which another provider may supply too "
                          "(a duplicate definition at link time)"
                          for other, (kind, bind) in sorted(member.defines.items())
                          if not other.startswith("_Z") and bind == "STB_GLOBAL"]
            reasons += [f"{member.label}: {h}" for h in found[:4]]
            if len(found) > 4:
                reasons.append(f"{member.label}: {len(found) - 4} more")
        return reasons

    def symbols(self):
        if self.unavailable:
            return {}
        try:
            return dict(self._check()[1])
        except BareflowError as exc:
            if self.settings["prefer"]:
                raise
            # Only asked for what bareflow-libc lacks: a damaged archive must not stop a build
            # that may not need it (a symbol nobody else has is still reported as missing).
            self.unavailable = f"cannot use {self.archive}: {exc}"
            sys.stderr.write(f"bareflow: warning: libc provider {NAME} disabled: {exc}\n")
            return {}

    def refused(self):
        """{symbol: reason} for every function of the archive this provider will not hand out."""
        if self.unavailable:
            return {}
        return dict(self._check()[2])

    def refusal(self, sym):
        """Why `sym` is not offered (None when it is)."""
        _, offered, refused = self._check()
        if sym in offered:
            return None
        if sym in refused:
            return refused[sym]
        if sym not in self.index().owner:
            return f"{self.archive} does not define {sym}"
        return f"{sym} is not a C function of {self.archive} (an internal or data symbol)"

    def object_for(self, symbol, workdir, verbose=False):
        reason = self.refusal(symbol)
        if reason is not None:
            raise BareflowError(f"libc provider {NAME} refuses {symbol}: {reason}")
        return self.index().owner[symbol].data


@hookimpl
def bareflow_configure(variables):
    prefer = (variables.get("LIBC_PREFER") or "").strip()
    _settings["prefer"] = prefer == NAME
    _settings["isa"] = variables.get("ISA") or "x86-64"
    problem = _availability(ARCHIVE) if prefer == NAME else None
    if problem:
        raise BareflowError(f"LIBC_PREFER={NAME}, but libc provider {NAME} is unavailable: {problem}; "
                            "install it or drop LIBC_PREFER")


@hookimpl
def bareflow_register_libc_providers():
    return [LlvmLibc()]

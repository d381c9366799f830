"""Plugin: LLVM's libc from Debian (libllvmlibc-19-dev) as a second libc provider.

Debian ships llvm-libc as one static archive of x86-64 objects built for a Linux *host*: in
"overlay" mode errno is the host C library's (`__errno_location`), everything is compiled with
the stack protector (the canary is read from %fs:0x28, thread-local storage BareFlow does not
have), and the maths functions were compiled for the build machine's CPU (AVX and FMA).  Only a
verified allow-list of members is therefore handed out; any other symbol is refused with the
reason (docs/libc.md, "The llvm-libc provider").

By default the provider is asked after the project's bareflow-libc (priority 100 > 50), so it
changes nothing unless a build needs a function the project libc lacks.  LIBC_PREFER=llvm-libc
puts it first.  When the archive is missing it registers as unavailable and supplies nothing.
"""
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_RELOC_TYPE_x64

from bareflow import hookimpl

from bareflow.libc import arfile
from bareflow.errors import BareflowError
from bareflow.libc.selection import LibcProvider

NAME = "llvm-libc"
ARCHIVE = Path("/usr/lib/llvm-19/lib/libllvmlibc.a")
PACKAGE = "libllvmlibc-19-dev"
PRIORITY = 100            # after bareflow-libc (50): only fills the project libc's gaps
PREFERRED_PRIORITY = 10   # LIBC_PREFER=llvm-libc: asked before bareflow-libc

# Checked by disassembling every member's closure (tests/test_llvm_libc.py repeats the check
# with objdump): baseline x86-64 instructions (SSE2 at most), no %fs/%gs access, no system
# call, no privileged instruction.
BASELINE_ALLOWED = (
    "memcpy", "memmove", "memset", "memcmp", "memchr", "bcmp",
    "strlen", "strnlen", "strcmp", "strncmp", "strchr", "strrchr",
    "abs", "labs", "rand", "srand",
    "sqrtf", "truncf", "floorf", "ceilf", "roundf",
)
# The same checks pass, but these use VEX-encoded AVX/FMA instructions: they fault (#UD) on a
# CPU without them, so they are offered only when the build's ISA is x86-64-v3.
V3_ALLOWED = ("fabsf", "copysignf", "fmaxf", "fminf", "fmaf")
V3_ISA = "x86-64-v3"

# Relocations a static link resolves without a GOT or PLT section (kernel.ld places neither).
_STATIC_RELOCS = {ENUM_RELOC_TYPE_x64[n] for n in (
    "R_X86_64_64", "R_X86_64_PC32", "R_X86_64_PLT32", "R_X86_64_32", "R_X86_64_32S", "R_X86_64_PC64")}
_RELOC_NAMES = {v: k for k, v in ENUM_RELOC_TYPE_x64.items()}
_PLACED_SECTION = re.compile(r"\.(text|rodata|data|bss)(\.|$)")
_CONSTRUCTOR_SECTION = re.compile(r"\.(init_array|fini_array|preinit_array|ctors|dtors)(\.|$)")
_STACK_PROTECTOR = ("__stack_chk_fail", "__stack_chk_guard")

_settings = {"prefer": False, "isa": "x86-64"}    # from bareflow_configure, per build
_index_cache = {}                                  # (path, size, mtime) -> _Index


@dataclass
class _Member:
    """What one archive member defines, needs and contains (hazards found statically)."""
    index: int
    name: str
    data: bytes = field(repr=False)
    defines: dict = field(default_factory=dict)     # symbol -> (STT_*, STB_*)
    undefined: set = field(default_factory=set)
    hazards: list = field(default_factory=list)

    @property
    def label(self):
        return f"{self.name} (member {self.index})"


class _Index:
    """Every member of the archive with its global definitions, parsed once per process."""

    def __init__(self, path):
        self.path = path
        archive = arfile.read_archive(path)
        self.members = [_scan_member(m, path) for m in archive.members]
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
    """Relocation types a freestanding static link cannot take (GOT, PLT, TLS); read only for
    members that may be handed out, since iterating relocations is the slow part."""
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
    """Allow-listed functions of Debian's llvm-libc archive, handed out as its member objects."""
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
        return (f"LLVM's libc from Debian's {PACKAGE}: allow-listed freestanding functions only "
                f"(LIBC_PREFER={NAME} asks it before bareflow-libc)")

    @property
    def capabilities(self):
        if self.unavailable:
            return {}
        return {"allowed (any ISA)": " ".join(BASELINE_ALLOWED),
                f"allowed with ISA={V3_ISA}": " ".join(V3_ALLOWED),
                "refused": "every other function (see docs/libc.md)"}

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
            offered, refused = {}, {}
            for sym in BASELINE_ALLOWED + V3_ALLOWED:
                reasons = self._hazards(index, sym)
                if not reasons and sym in V3_ALLOWED and isa != V3_ISA:
                    reasons = [f"its code uses AVX/FMA instructions; allowed only with ISA={V3_ISA}"]
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
    def _hazards(index, sym):
        """Why `sym` cannot run freestanding, found from its closure's objects alone."""
        if sym not in index.owner:
            return [f"{index.path} does not define it"]
        members, external = index.closure(sym)
        reasons = []
        protector = sorted(external & set(_STACK_PROTECTOR))
        if protector:
            reasons.append("it is compiled with the stack protector, which reads its canary from "
                           "%fs:0x28 (thread-local storage BareFlow does not have) and calls "
                           + ", ".join(protector))
        host = sorted(external - set(_STACK_PROTECTOR))
        if host:
            reasons.append("it needs symbols from the host's C library: " + ", ".join(host)
                           + (" (errno lives in glibc)" if "__errno_location" in host else ""))
        for position, member in enumerate(members):
            found = member.hazards + _relocation_hazards(member)
            if position:      # reached through an internal symbol, so a C name it defines
                              # is a second definition the selection does not know about
                found += [f"it also defines {other}, which another provider may supply too "
                          "(a duplicate definition at link time)"
                          for other, (kind, bind) in sorted(member.defines.items())
                          if not other.startswith("_Z") and bind == "STB_GLOBAL"]
            reasons += [f"{member.label}: {h}" for h in found]
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
        _, offered, refused = self._check()
        result = dict(refused)
        for sym in self.index().functions():
            if sym not in offered and sym not in result:
                result[sym] = self.refusal(sym)
        return result

    def refusal(self, sym):
        """Why `sym` is not offered (None when it is)."""
        _, offered, refused = self._check()
        if sym in offered:
            return None
        if sym in refused:
            return refused[sym]
        if sym not in self.index().owner:
            return f"{self.archive} does not define {sym}"
        reasons = self._hazards(self.index(), sym)
        unlisted = ("not on the allow-list (AVX/FMA, system calls and privileged instructions only "
                    "show in a disassembly, so each allowed function was checked that way)")
        return "; ".join(reasons + [unlisted])

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

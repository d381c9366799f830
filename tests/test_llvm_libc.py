"""The ar reader and the llvm-libc provider (Debian's libllvmlibc-22-dev archive).

Tests on the real archive skip when it is not installed; the ar reader is also tested on
archives built here, by hand and (when binutils is installed) by `ar` itself.
"""
import re
import shutil
import struct
import subprocess

import pytest

from bareflow.libc.selection import ordered_providers
from bareflow.libc import arfile

from bareflow.libc import selection as libc

from bareflow.bitcode import toolchain
from bareflow.libc import llvm_libc
from bareflow.errors import BareflowError
from conftest import ROOT

ARCHIVE = llvm_libc.ARCHIVE
needs_archive = pytest.mark.skipif(
    not ARCHIVE.is_file() or shutil.which("objdump") is None,
    reason=f"{ARCHIVE} or objdump missing (Debian packages {llvm_libc.PACKAGE}, binutils; tools/setup.sh)")
PLUGIN = "bareflow.libc.llvm_libc"


def need_tool(name):
    if shutil.which(name) is None:
        pytest.skip(f"needs {name} (binutils)")


@pytest.fixture(autouse=True)
def fresh_settings():
    """The plugin keeps the build's LIBC_PREFER/ISA in module state: start and end clean."""
    llvm_libc.bareflow_configure({})
    yield
    llvm_libc.bareflow_configure({})


# --- a hand-built archive ------------------------------------------------------------------

def member(name_field, data, mode=b"100644"):
    header = (name_field.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6)
              + mode.ljust(8) + str(len(data)).encode().ljust(10) + b"`\n")
    assert len(header) == 60
    return header + data + (b"\n" if len(data) % 2 else b"")


def build_archive(members, symbols, sym64=False):
    """GNU layout: symbol table, long-name table, members.  `members` is [(name, data)];
    `symbols` is [(symbol, member position)]; returns (bytes, header offset of each member)."""
    width, fmt, table_name = (8, ">Q", b"/SYM64/") if sym64 else (4, ">I", b"/")
    longs, fields = b"", []
    for name, _ in members:
        if len(name) > 15:
            fields.append(b"/%d" % len(longs))
            longs += name.encode() + b"/\n"
        else:
            fields.append(name.encode() + b"/")
    names = b"".join(s.encode() + b"\0" for s, _ in symbols)
    table_size = width * (len(symbols) + 1) + len(names)
    pos = 8 + 60 + table_size + (table_size & 1)
    if longs:
        pos += 60 + len(longs) + (len(longs) & 1)
    offsets = []
    for (_, data) in members:
        offsets.append(pos)
        pos += 60 + len(data) + (len(data) & 1)
    table = struct.pack(fmt, len(symbols)) + b"".join(struct.pack(fmt, offsets[i]) for _, i in symbols)
    out = arfile.MAGIC + member(table_name, table + names)
    if longs:
        out += member(b"//", longs)
    out += b"".join(member(f, data) for f, (_, data) in zip(fields, members))
    return out, offsets


HAND_MEMBERS = [("odd.o", b"12345"), ("fifteen_chars_o", b"even"),
                ("a_member_name_longer_than_sixteen.o", b"long one"), ("odd.o", b"again")]
HAND_SYMBOLS = [("alpha", 0), ("beta", 2), ("weak_twice", 0), ("weak_twice", 3)]


@pytest.mark.parametrize("sym64", [False, True])
def test_hand_built_archive(sym64):
    data, offsets = build_archive(HAND_MEMBERS, HAND_SYMBOLS, sym64)
    archive = arfile.parse_archive(data, "hand.a")
    assert [(m.name, m.data) for m in archive.members] == HAND_MEMBERS
    assert [m.offset for m in archive.members] == offsets
    assert [m.index for m in archive.members] == [0, 1, 2, 3]
    assert archive.symbols == [(s, offsets[i]) for s, i in HAND_SYMBOLS]
    table = archive.symbol_members()
    assert [m.name for m in table["beta"]] == ["a_member_name_longer_than_sixteen.o"]
    assert [m.index for m in table["weak_twice"]] == [0, 3]      # same name, two members
    assert archive.member_at(offsets[1]).name == "fifteen_chars_o"


@pytest.mark.parametrize("mangle, message", [
    (lambda d: b"!<arcx>\n" + d[8:], "not an ar archive"),
    (lambda d: b"!<thin>\n" + d[8:], "thin archive"),
    (lambda d: d[:-70], "claims"),                                  # last member cut short
    (lambda d: d + b"x" * 10, "truncated member header"),
    (lambda d: d[:8 + 58] + b"??" + d[8 + 60:], "bad member header at offset 8"),
    (lambda d: d[:8 + 48] + b"12a4      " + d[8 + 58:], "size field '12a4'"),
])
def test_broken_archives_are_named(mangle, message):
    data, _ = build_archive(HAND_MEMBERS, HAND_SYMBOLS)
    with pytest.raises(BareflowError) as err:
        arfile.parse_archive(mangle(data), "broken.a")
    assert "broken.a" in str(err.value) and message in str(err.value)


def test_unsupported_names_are_refused():
    no_table = arfile.MAGIC + member(b"/0", b"data")
    with pytest.raises(BareflowError, match="no '//' long-name table"):
        arfile.parse_archive(no_table, "x.a")
    bsd = arfile.MAGIC + member(b"#1/12", b"name.o\0\0\0\0\0\0data")
    with pytest.raises(BareflowError, match="BSD-style"):
        arfile.parse_archive(bsd, "x.a")
    outside = arfile.MAGIC + member(b"//", b"n.o/\n") + member(b"/40", b"data")
    with pytest.raises(BareflowError, match="outside the"):
        arfile.parse_archive(outside, "x.a")
    stray = arfile.MAGIC + member(b"/", struct.pack(">II", 1, 999) + b"ghost\0") + member(b"a.o/", b"zz")
    with pytest.raises(BareflowError, match="'ghost' points at offset 999"):
        arfile.parse_archive(stray, "x.a").symbol_members()


def test_binutils_archive_with_long_and_repeated_names(tmp_path):
    need_tool("ar")
    sources = {"one.c": "int bf_one(void) { return 1; }\n",
               "a_long_member_name_for_testing.c": "int bf_two_long(int x) { return x + 2; }\n"}
    objects = []
    for src, text in sources.items():
        (tmp_path / src).write_text(text)
        obj = tmp_path / src.replace(".c", ".o")
        toolchain.run(toolchain.CC + toolchain.FREESTANDING_CFLAGS + ["-O2", "-c", str(tmp_path / src),
                                                                     "-o", str(obj)], what="cc")
        objects.append(obj)
    lib = tmp_path / "libt.a"
    subprocess.run(["ar", "rcs", str(lib)] + [str(o) for o in objects], check=True)
    subprocess.run(["ar", "q", str(lib), str(objects[0])], check=True)   # a second "one.o"
    subprocess.run(["ar", "s", str(lib)], check=True)
    archive = arfile.read_archive(lib)
    listed = subprocess.run(["ar", "t", str(lib)], capture_output=True, text=True, check=True).stdout.split()
    assert archive.names() == listed == ["one.o", "a_long_member_name_for_testing.o", "one.o"]
    assert [m.data for m in archive.members] == [o.read_bytes() for o in objects + objects[:1]]
    table = archive.symbol_members()
    assert [m.index for m in table["bf_two_long"]] == [1]
    assert [m.index for m in table["bf_one"]] == [0, 2]


# --- the real archive ----------------------------------------------------------------------

@needs_archive
def test_reader_agrees_with_binutils_on_the_real_archive():
    need_tool("ar")
    archive = arfile.read_archive(ARCHIVE)
    listed = subprocess.run(["ar", "t", str(ARCHIVE)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert archive.names() == listed and len(listed) > 600
    for name in ("expf.cpp.o", "memcpy.cpp.o", "qsort.cpp.o"):
        extracted = subprocess.run(["ar", "p", str(ARCHIVE), name], capture_output=True, check=True).stdout
        assert [m.data for m in archive.members if m.name == name] == [extracted]


@needs_archive
def test_symbol_table_matches_what_the_members_define():
    archive = arfile.read_archive(ARCHIVE)
    index = llvm_libc.load_index(ARCHIVE)
    assert llvm_libc.load_index(ARCHIVE) is index          # parsed once per process
    from_table = {(sym, m.index) for sym, members in archive.symbol_members().items() for m in members}
    from_elf = {(sym, m.index) for m in index.members for sym in m.defines}
    assert from_table == from_elf


@needs_archive
def test_index_finds_the_functions_bareflow_uses():
    index = llvm_libc.load_index(ARCHIVE)
    for sym in ("expf", "memcpy", "qsort", "sqrtf", "powf", "sinf", "cosf"):
        owner = index.owner[sym]
        assert owner.name == f"{sym}.cpp.o"
        assert owner.defines[sym] == ("STT_FUNC", "STB_GLOBAL")
    assert {"expf", "memcpy", "qsort"} <= set(index.functions())
    assert not any(s.startswith("_Z") for s in index.functions())
    # llvm-libc 22's maths is one member each; what it needs from outside is what the runtime supplies
    for sym in ("expf", "powf", "sinf", "cosf"):
        members, external = index.closure(sym)
        assert [m.name for m in members] == [f"{sym}.cpp.o"]
        assert external == set(llvm_libc.PROGRAM_SUPPLIED) == {"__errno_location", "__stack_chk_fail"}
        assert members[0].level == 2          # AVX2/FMA code: x86-64-v3


def test_the_summary_cache_is_used_and_keyed_by_the_archive(tmp_path, monkeypatch):
    if not ARCHIVE.is_file() or shutil.which("objdump") is None:
        pytest.skip(f"needs {ARCHIVE} and objdump")
    monkeypatch.setenv("BAREFLOW_CACHE", str(tmp_path))
    llvm_libc._index_cache.clear()
    first = llvm_libc.load_index(ARCHIVE)
    cached = list((tmp_path / "llvm-libc").glob("*.json"))
    assert len(cached) == 1
    llvm_libc._index_cache.clear()
    again = llvm_libc.load_index(ARCHIVE)
    assert [(m.name, m.defines, m.undefined, m.hazards, m.level) for m in again.members] == \
           [(m.name, m.defines, m.undefined, m.hazards, m.level) for m in first.members]
    llvm_libc._index_cache.clear()


# --- selection -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project():
    return libc.ProjectLibc(ROOT / "src" / "libc", toolchain.FREESTANDING_CFLAGS)


def provider(prefer=False, isa="x86-64"):
    return llvm_libc.LlvmLibc(settings={"prefer": prefer, "isa": isa})


BAREFLOW_NEEDS = {"expf": {"module:ffn"}, "qsort": {"module:sampler"}, "sqrtf": {"module:rmsnorm"},
                  "memcpy": {"kernel"}, "strlen": {"kernel"}, "powf": {"module:rope"},
                  "sinf": {"module:rope"}, "cosf": {"module:rope"}}


@needs_archive
def test_default_priority_leaves_the_project_libc_in_charge(project, tmp_path):
    alone = libc.select(BAREFLOW_NEEDS, [project], tmp_path)
    both = libc.select(BAREFLOW_NEEDS, [provider(), project], tmp_path)
    assert provider().priority > project.priority
    assert {s.provider for s in both.symbols.values()} == {"bareflow-libc"}
    assert both.manifest() == alone.manifest() and both.objects == alone.objects


@needs_archive
def test_default_priority_fills_only_the_gaps(project, tmp_path):
    selection = libc.select({"floorf": {"module:x"}, "rand": {"kernel"}, "expf": {"module:ffn"}},
                            [project, provider()], tmp_path)
    rows = {row["symbol"]: row for row in selection.manifest()}
    assert rows["expf"]["provider"] == "bareflow-libc"
    assert rows["floorf"]["provider"] == rows["rand"]["provider"] == "llvm-libc"
    # rand's state lives in another member: the closure follows the internal symbol there
    state = next(s for s in rows if s.startswith("_ZN") and s.endswith("9rand_nextE"))
    assert rows[state]["provider"] == "llvm-libc" and rows[state]["needed_by"] == ["libc:rand"]
    index = llvm_libc.load_index(ARCHIVE)
    assert index.owner[state].name == "rand_util.cpp.o"
    assert index.owner[state].data in selection.objects.values()


def _links(selection, tmp_path):
    """The combined subset links (ld -r): what the build's LIBC step does with the objects."""
    paths = []
    for n, data in enumerate(sorted(selection.objects.values())):
        paths.append(tmp_path / f"o{n}.o")
        paths[-1].write_bytes(data)
    toolchain.run(toolchain.LD_LLD + ["-r", "-o", str(tmp_path / "subset.o")] + [str(p) for p in paths],
                  what="ld -r")


@needs_archive
def test_preferred_llvm_libc_at_baseline_leaves_the_avx_maths_to_the_project(project, tmp_path):
    program = set(llvm_libc.PROGRAM_SUPPLIED)
    selection = libc.select(BAREFLOW_NEEDS, [project, provider(prefer=True)], tmp_path, program_defines=program)
    by = {s: sel.provider for s, sel in selection.symbols.items()}
    assert by["memcpy"] == by["strlen"] == by["sqrtf"] == by["qsort"] == "llvm-libc"
    # AVX2/FMA code, the build is baseline x86-64: the project libc answers instead
    assert by["expf"] == by["powf"] == by["sinf"] == by["cosf"] == "bareflow-libc"
    assert llvm_libc.load_index(ARCHIVE).owner["qsort"].data in selection.objects.values()
    assert "__stack_chk_fail" not in by         # the program's, not a provider's
    _links(selection, tmp_path)


@needs_archive
def test_preferred_llvm_libc_at_v3_supplies_every_function_the_layers_import(project, tmp_path):
    selection = libc.select(BAREFLOW_NEEDS, [project, provider(prefer=True, isa="x86-64-v3")], tmp_path,
                            program_defines=set(llvm_libc.PROGRAM_SUPPLIED))
    assert {selection.symbols[s].provider for s in BAREFLOW_NEEDS} == {"llvm-libc"}
    _links(selection, tmp_path)
    # without the program's __errno_location/__stack_chk_fail the selection would have to find them
    with pytest.raises(BareflowError, match=r"__errno_location: needed by libc:expf"):
        libc.select({"expf": {"module:ffn"}}, [provider(prefer=True, isa="x86-64-v3")], tmp_path)


@needs_archive
@pytest.mark.parametrize("sym, isa, phrases", [
    ("expf", "x86-64", ["needs x86-64-v3", "expf.cpp.o", "ISA=x86-64)", "every ISA level is x86-64-v3"]),
    ("sinf", "x86-64-v2,x86-64-v3", ["needs x86-64-v3", "lowest ISA level is x86-64-v2"]),
    ("getpid", "x86-64-v3", ["getpid.cpp.o", "system instruction `syscall`"]),
    ("strerror", "x86-64-v3", ["thread-local variable", "R_X86_64_TPOFF32"]),
    ("printf", "x86-64-v3", ["host's C library", "stdout", "R_X86_64_REX_GOTPCRELX"]),
    ("frobnicate", "x86-64-v3", ["does not define frobnicate"]),
])
def test_refusals_say_why(sym, isa, phrases):
    p = provider(isa=isa)
    assert sym not in p.symbols()
    with pytest.raises(BareflowError) as err:
        p.object_for(sym, "/nonexistent")
    message = str(err.value)
    assert message.startswith(f"libc provider llvm-libc refuses {sym}: ")
    for phrase in phrases:
        assert phrase in message


@needs_archive
def test_avx_functions_only_when_every_level_is_v3(tmp_path):
    for isa, offered in (("x86-64", False), ("x86-64,x86-64-v3", False), ("x86-64-v3", True),
                         ("x86-64-v3,x86-64-v4", True)):
        p = provider(isa=isa)
        assert ("fabsf" in p.symbols()) == ("expf" in p.symbols()) == offered, isa
    v3 = provider(isa="x86-64-v3")
    assert v3.object_for("expf", tmp_path) == llvm_libc.load_index(ARCHIVE).owner["expf"].data


@needs_archive
def test_a_refused_symbol_nobody_else_has_is_reported_missing(tmp_path):
    with pytest.raises(BareflowError) as err:
        libc.select({"expf": {"module:ffn"}}, [provider(prefer=True)], tmp_path)
    assert "expf: needed by module:ffn" in str(err.value)


@needs_archive
def test_every_function_is_either_offered_or_refused_with_a_reason():
    index = llvm_libc.load_index(ARCHIVE)
    for isa in ("x86-64", "x86-64-v3"):
        p = provider(isa=isa)
        offered, refused = p.symbols(), p.refused()
        for sym in index.functions():
            assert (sym in offered) != (sym in refused), sym
        assert all(refused.values())
        assert len([s for s in offered if not s.startswith("_Z")]) > 300
    assert len(provider(isa="x86-64-v3").symbols()) > len(provider().symbols())


# The provider's claim, re-checked from the machine code with a rule of this test's own: no
# %gs, %fs only at the TCB's self-pointer and canary, no system call or privileged instruction,
# and nothing beyond SSE2 when offered at baseline (TZCNT excepted: it runs as BSF without BMI1,
# see bareflow/libc/machine_code.py).
FORBIDDEN = {"syscall", "sysenter", "int", "hlt", "cli", "sti", "in", "out", "rdmsr", "wrmsr",
             "lgdt", "lidt", "invlpg", "xsetbv", "wrfsbase", "wrgsbase", "swapgs"}
BEYOND_SSE2 = re.compile(r"^(v\w+|round[sp][sd]|pshufb|palignr|ph(add|sub)\w*|pabs\w|psign\w|pmaddubsw|"
                         r"pmulhrsw|ptest|pblend\w*|blendv?p[sd]|dpp[sd]|insertps|extractps|pextr[bdq]|"
                         r"pinsr[bdq]|pmin[su][bdw]|pmax[su][bdw]|pmulld|pmuldq|pcmp(eq|gt)q|packusdw|"
                         r"pmov[sz]x\w+|movntdqa|mpsadbw|phminposuw|pcmp[ei]str[im]|crc32|popcnt|lzcnt|"
                         r"movbe|andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|"
                         r"shrx|addsubp[sd]|h(add|sub)p[sd]|mov[sh]dup|movddup|lddqu|fisttp\w*)$")


@needs_archive
def test_offered_machine_code_is_freestanding(tmp_path):
    index = llvm_libc.load_index(ARCHIVE)
    baseline, v3 = provider().symbols(), provider(isa="x86-64-v3").symbols()
    functions = [s for s in index.functions() if s in v3]
    sample = sorted(set(functions[::9]) | {"memcpy", "qsort", "sqrtf", "expf", "powf", "sinf", "cosf"})
    fs_seen = set()
    for sym in sample:
        paths, external = index.write_closure(sym, tmp_path)
        assert external <= set(llvm_libc.PROGRAM_SUPPLIED), (sym, external)
        for path in paths:
            text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)],
                                  capture_output=True, text=True, check=True).stdout
            for line in text.splitlines():
                insn = line.split("\t")[-1].strip() if "\t" in line else ""
                words = [w for w in insn.split("#")[0].split() if w not in ("lock", "rep", "repz", "repnz",
                                                                             "data16", "cs", "notrack")]
                if not words:
                    continue
                assert "%gs" not in insn, (sym, path.name, insn)
                for off in re.findall(r"%fs:(0x[0-9a-f]+|)", insn):
                    assert int(off or "0", 16) in (0, 0x28), (sym, path.name, insn)
                    fs_seen.add(int(off or "0", 16))
                assert words[0] not in FORBIDDEN, (sym, path.name, insn)
                if BEYOND_SSE2.match(words[0]):
                    assert sym not in baseline, (sym, path.name, insn)
    assert 0x28 in fs_seen          # the canary really is read: the TCB is needed
    assert {"expf", "powf", "sinf", "cosf"} <= set(v3) and not {"expf", "powf", "sinf", "cosf"} & set(baseline)


# --- the machine-code classifier on hand-written objdump lines -----------------------------

OBJDUMP = """
In archive x.a:

a.o:     file format elf64-x86-64

Disassembly of section .text.a:

0000000000000000 <a>:
   0:\t48 89 e5             \tmov    %rsp,%rbp
   3:\t66 0f 3a 0b c0 04    \troundsd $0x4,%xmm0,%xmm0
   9:\tc3                   \tret

b.o:     file format elf64-x86-64

0000000000000000 <b>:
   0:\tc4 e2 f9 a9 c1       \tvfmadd213sd %xmm1,%xmm0,%xmm0
   5:\t64 48 8b 04 25 28 00 00 00 \tmov    %fs:0x28,%rax
   e:\t0f 05                \tsyscall
  10:\t64 48 8b 04 25 10 00 00 00 \tmov    %fs:0x10,%rax
  19:\t65 48 8b 04 25 00 00 00 00 \tmov    %gs:0x0,%rax

c.o:     file format elf64-x86-64

0000000000000000 <c>:
   0:\t62 f1 7c 48 58 c1    \tvaddps %zmm1,%zmm0,%zmm0
   6:\tf3 48 0f bd c7       \tlzcnt  %rdi,%rax
   b:\t0f 22 d8             \tmov    %rax,%cr3
"""


def test_machine_code_classifier():
    from bareflow.libc import machine_code
    a, b, c = machine_code.parse(OBJDUMP)
    assert (a.name, a.level, a.level_example, a.hazards) == ("a.o", 1, "roundsd $0x4,%xmm0,%xmm0", [])
    assert b.level == 2 and b.fs_offsets == {0x28, 0x10}
    assert any("syscall" in h for h in b.hazards)
    assert any("%fs:0x10" in h and "TCB does not define" in h for h in b.hazards)
    assert any("%gs" in h for h in b.hazards)
    assert not any("%fs:0x28" in h for h in b.hazards)
    assert c.level == 3 and machine_code.level_name(c.level) == "x86-64-v4"
    assert any("%cr3" in h for h in c.hazards)


# --- the plugin in the manager ----------------------------------------------------------------

@needs_archive
def test_plugin_registers_and_prefer_reorders():
    from bareflow.core.manager import load_plugins
    pm = load_plugins({"PLUGINS": PLUGIN}, entry_points=False, environ={})
    names = [p.name for p in ordered_providers(pm)]
    assert names.index("bareflow-libc") < names.index("llvm-libc")
    assert "functions, e.g. memcpy strlen sqrtf qsort" in pm.describe()   # baseline ISA
    pm.hook.bareflow_configure(variables={"LIBC_PREFER": "llvm-libc", "ISA": "x86-64"})
    names = [p.name for p in ordered_providers(pm)]
    assert names.index("llvm-libc") < names.index("bareflow-libc")
    pm.hook.bareflow_configure(variables={"LIBC_PREFER": "bareflow-libc"})
    names = [p.name for p in ordered_providers(pm)]
    assert names.index("bareflow-libc") < names.index("llvm-libc")


def test_missing_archive_registers_an_unavailable_provider(monkeypatch, project, tmp_path):
    from bareflow.core.manager import load_plugins
    missing = tmp_path / "no" / "libllvmlibc.a"
    monkeypatch.setattr(llvm_libc, "ARCHIVE", missing)
    pm = load_plugins({"PLUGINS": PLUGIN}, entry_points=False, environ={})
    text = pm.describe()
    assert f"UNAVAILABLE, {missing} not found (install Debian's libllvmlibc-22-dev)" in text
    p = next(p for p in ordered_providers(pm) if p.name == "llvm-libc")
    assert p.symbols() == {} and p.dependencies() == []
    # a build that does not prefer it is unaffected ...
    pm.hook.bareflow_configure(variables={})
    selection = libc.select({"memcpy": {"kernel"}}, ordered_providers(pm), tmp_path)
    assert selection.symbols["memcpy"].provider == "bareflow-libc"
    # ... and asking for it says what is missing
    with pytest.raises(BareflowError) as err:
        pm.hook.bareflow_configure(variables={"LIBC_PREFER": "llvm-libc"})
    assert "LIBC_PREFER=llvm-libc" in str(err.value) and "libllvmlibc-22-dev" in str(err.value)


def test_damaged_archive_does_not_break_a_build_that_does_not_prefer_it(project, tmp_path, capsys):
    bad = tmp_path / "libllvmlibc.a"
    bad.write_bytes(arfile.MAGIC + member(b"x.o/", b"not an ELF object"))
    quiet = llvm_libc.LlvmLibc(bad, settings={"prefer": False, "isa": "x86-64"})
    selection = libc.select({"memcpy": {"kernel"}}, [project, quiet], tmp_path)
    assert selection.symbols["memcpy"].provider == "bareflow-libc"
    assert "libc provider llvm-libc disabled" in capsys.readouterr().err
    loud = llvm_libc.LlvmLibc(bad, settings={"prefer": True, "isa": "x86-64"})
    with pytest.raises(BareflowError, match=r"x\.o, member 0\): not an ELF object"):
        libc.select({"memcpy": {"kernel"}}, [project, loud], tmp_path)


# --- end to end -------------------------------------------------------------------------------

def _built_with_llvm_libc(out):
    manifest = (out / "libc" / "LIBC.MAN").read_text()
    rows = {line.split()[0]: line.split()[1] for line in manifest.splitlines() if not line.startswith("#")}
    for sym in ("memcpy", "strlen", "qsort", "sqrtf", "expf", "powf", "sinf", "cosf"):
        assert rows[sym] == "llvm-libc", (sym, rows)
    from elftools.elf.elffile import ELFFile
    with open(out / "kernel" / "KERNEL.BIN.elf", "rb") as f:
        names = {s.name for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    assert any(n.startswith("_ZN19__llvm_libc_") and "expf" in n for n in names)   # llvm-libc's code is inside


@needs_archive
def test_llvm_libc_tokens_equal_the_project_libc_tokens(tmp_path_factory, default_build):
    """Synthetic model: LIBC_PREFER=llvm-libc (ISA=x86-64-v3, every layer import from llvm-libc)
    gives the project libc's tokens, hosted and booted under QEMU -cpu max -smp 2 (llvm-libc
    runs on both cores: the split layers call expf on core 1 too)."""
    from buildutil import hosted, qemu, result, scons, tool
    out = tmp_path_factory.mktemp("llvm-libc")
    scons(out, "image", "hosted", "-j2", f"PLUGINS={PLUGIN}", "LIBC_PREFER=llvm-libc", "ISA=x86-64-v3")
    _built_with_llvm_libc(out)
    code, output = hosted(out / "bareflow-hosted", out / "bareflow.img")
    assert code == 0, output[-2000:]
    mine = result(output)
    _, reference_output = hosted(default_build.hosted, default_build.image)
    assert mine["tokens"] and mine["tokens"] == result(reference_output)["tokens"]
    if tool("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 missing: hosted run checked, boot not")
    status, serial = qemu(out / "bareflow.img", cpu="max", smp=2)
    assert status == 33, serial[-2000:]
    booted = result(serial)
    assert booted["tokens"] == mine["tokens"]
    assert booted["cores"]["used"] == 2 and all(ms > 0 for ms in booted["cores"]["busy_ms"]), booted["cores"]


@needs_archive
def test_llvm_libc_tokens_equal_on_stories260k(tmp_path_factory, stories_build):
    """stories260K (a real llama2.c checkpoint), hosted: llvm-libc's tokens are the project libc's."""
    from buildutil import hosted, result, scons, stories
    model, tok = stories()
    out = tmp_path_factory.mktemp("llvm-libc-stories")
    scons(out, "image", "hosted", "-j2", f"PLUGINS={PLUGIN}", "LIBC_PREFER=llvm-libc", "ISA=x86-64-v3",
          f"MODEL={model}", f"TOKENIZER={tok}")
    _built_with_llvm_libc(out)
    code, output = hosted(out / "bareflow-hosted", out / "bareflow.img")
    assert code == 0, output[-2000:]
    _, reference_output = hosted(stories_build.hosted, stories_build.image)
    mine, reference = result(output)["tokens"], result(reference_output)["tokens"]
    assert mine and mine == reference

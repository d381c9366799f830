"""The libc tree's structural promises: one external function per file, named after the
file; every file compiles standalone with the kernel's freestanding flags; headers declare
exactly the functions that have a file; undefined symbols are only other libc functions."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parents[1]
LIBC = REPO / "src" / "libc"
SOURCES = sorted(p for p in LIBC.glob("*/*.c"))
FLAGS = ["-target", "x86_64-freestanding", "-ffreestanding", "-fno-sanitize=all",
         "-fno-stack-protector", "-g0", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
         "-mno-red-zone", "-fno-pic", "-fno-pie", "-O2", "-Werror", "-Wall", "-Wextra",
         f"-I{LIBC / 'include'}", f"-I{REPO / 'src' / 'include'}"]


def header_functions():
    names = set()
    for h in (LIBC / "include").glob("*.h"):
        text = re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S)
        text = re.sub(r"^\s*#.*$", "", text, flags=re.M)
        names |= set(re.findall(r"\b(\w+)\s*\([^;{]*\)\s*(?:__attribute__\(\(.*?\)\))?\s*;", text, re.S))
    return names


def symbols(obj):
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        tab = elf.get_section_by_name(".symtab")
        defined, undefined = set(), set()
        for s in tab.iter_symbols():
            if s["st_info"]["bind"] != "STB_GLOBAL" or not s.name:
                continue
            (undefined if s["st_shndx"] == "SHN_UNDEF" else defined).add(s.name)
        return defined, undefined


def test_tree_is_complete():
    got = {p.stem for p in SOURCES}
    want = {"memcpy", "memmove", "memset", "memcmp", "strlen", "strcmp", "strncmp", "strchr",
            "expf", "logf", "sqrtf", "powf", "sinf", "cosf", "fabsf", "tanhf",
            "qsort", "abs", "snprintf", "vsnprintf"}
    assert want <= got
    assert header_functions() == got, "headers must declare exactly the implemented functions"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_one_function_per_file(src, tmp_path):
    obj = tmp_path / (src.stem + ".o")
    subprocess.run([sys.executable, "-m", "ziglang", "cc", *FLAGS, "-c", str(src), "-o", str(obj)],
                   check=True)
    defined, undefined = symbols(obj)
    assert defined == {src.stem}, f"{src}: exports {sorted(defined)}"
    libc_names = {p.stem for p in SOURCES}
    assert undefined <= libc_names, f"{src}: needs non-libc symbols {sorted(undefined - libc_names)}"
    if src.stem != "snprintf":
        assert not undefined, f"{src}: calls {sorted(undefined)}"
    else:
        assert undefined == {"vsnprintf"}

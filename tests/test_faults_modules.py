"""Issue 8, kind 3: the module loader accepts exactly what the build emits.

A module whose CRC was recomputed after tampering passes the checksum (docs/module-format.md
says why that is expected), so the structural rules must hold on their own: relocations patch
data only, in ascending non-overlapping order, RELATIVE64 only inside the stored image,
IMPORT64 with addend 0, and the entry at offset 0.  Each case is refused by the kernel (hosted
runtime) and by the build's reader (modformat.parse) alike; the real modules pass both.
"""
import struct

import pytest

from bareflow.modules import modformat
from bareflow.errors import BareflowError
from test_runtime_hosted import base_files, expect_panic, module_files, needs_mtools, recrc_module


def patched(data, offset, fmt, *values):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, *values)
    return recrc_module(bytes(data))


def reloc_at(data, i=0):
    return 64 + modformat.parse(data).file_image_size + 16 * i


def with_relocs(n):
    for name, data in sorted(module_files().items()):
        if len(modformat.parse(data).relocs) >= n:
            return name, data
    pytest.skip(f"no module has {n} relocations")


def reloc_inside_code():
    name, data = with_relocs(1)
    return name, patched(data, reloc_at(data), "<I", 8), "inside the code"


def import_addend():
    name, data = with_relocs(1)
    return name, patched(data, reloc_at(data) + 8, "<q", 16), "has addend 16, expected 0"


def entry_not_first():
    name = "/MODULES/ATTN.O0"
    return name, patched(module_files()[name], 40, "<I", 16), "entry_offset 16, expected 0"


def relocs_overlap():
    name, data = with_relocs(2)
    first = struct.unpack_from("<I", data, reloc_at(data))[0]
    return name, patched(data, reloc_at(data, 1), "<I", first + 4), "overlaps or precedes"


def relative_in_tail():
    name, data = with_relocs(1)
    info = modformat.parse(data)
    at = reloc_at(data)
    data = patched(data, at + 4, "<H", modformat.RELATIVE64)     # the import slot lies in the zero tail
    return name, data, "in the zero-filled tail"


CASES = {f.__name__: f for f in (reloc_inside_code, import_addend, entry_not_first, relocs_overlap,
                                 relative_in_tail)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_reader_refuses(case):
    name, data, _fragment = CASES[case]()
    with pytest.raises(BareflowError):
        modformat.parse(data, what=name)


@needs_mtools
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_loader_refuses(tmp_path, case):
    name, data, fragment = CASES[case]()
    files = base_files()
    files[name] = data
    run = expect_panic(tmp_path, files, fragment)
    assert name in run.panic


def test_real_modules_follow_the_rules():
    for name, data in module_files().items():
        info = modformat.parse(data, what=name)
        assert info.entry_offset == 0
        assert all(off >= info.text_size and (kind == modformat.RELATIVE64 or addend == 0)
                   for off, kind, _i, addend in info.relocs), name


def _pack_source(tmp_path, source):
    from bareflow.libc import selection as libc
    from bareflow.tiers import compile as tiers
    from buildutil import module_bitcode
    from test_runtime_hosted import REPO
    bc = module_bitcode(tmp_path, "m", source)
    obj = tiers.compile_tier(bc.read_bytes(), "O1", "x86-64", module_name="embed")
    exports = set(libc.ProjectLibc(REPO / "src" / "libc", []).symbols())
    return lambda: modformat.pack(obj, layer="embed", tier="O1", isa="x86-64", exports=exports)


def test_build_puts_a_jump_to_a_late_entry_first(tmp_path):
    """bf_layer_entry after another function: the build makes offset 0 a jmp to it, so the
    format's one entry rule (offset 0) holds for every module the build emits."""
    pack = _pack_source(tmp_path, "void helper(struct bf_layer_call *c) { c->result = 2; }\n"
                                  "void bf_layer_entry(struct bf_layer_call *c) { helper(c); c->result++; }\n")
    data = pack()
    info = modformat.parse(data)
    assert info.entry_offset == 0 and data[64] == 0xE9
    target = 5 + struct.unpack_from("<i", data, 65)[0]
    assert 16 <= target < info.text_size


def test_build_refuses_an_import_with_an_addend(tmp_path):
    pack = _pack_source(tmp_path, "extern float expf(float);\n"
                                  "void *volatile where = (char *)expf + 4;\n"
                                  "void bf_layer_entry(struct bf_layer_call *c) { c->result = where != 0; }\n")
    with pytest.raises(BareflowError, match=r"reference to 'expf'\+4: an import must be the function's own address"):
        pack()


def test_build_packs_a_data_pointer_table_the_loader_accepts(tmp_path):
    """The legitimate neighbour: absolute pointers in data become RELATIVE64 records past the code."""
    pack = _pack_source(tmp_path, "static void a(struct bf_layer_call *c) { c->result = 1; }\n"
                                  "static void b(struct bf_layer_call *c) { c->result = 2; }\n"
                                  "void (*const volatile table[2])(struct bf_layer_call *) = {a, b};\n"
                                  "void bf_layer_entry(struct bf_layer_call *c) { table[c->pos & 1](c); }\n")
    info = modformat.parse(pack())
    relative = [r for r in info.relocs if r[1] == modformat.RELATIVE64]
    assert len(relative) == 2 and all(off >= info.text_size for off, *_ in relative)


@needs_mtools
def test_module_with_the_entry_jump_runs(tmp_path):
    """The real embed layer with a function before bf_layer_entry: packed with the jump, it
    loads and the run gives the same tokens as with the ordinary module."""
    from bareflow.bitcode import compile as bitcode
    from bareflow.libc import selection as libc
    from bareflow.tiers import compile as tiers
    from bareflow.bitcode import toolchain
    from test_runtime_hosted import REPO, run_files
    src = tmp_path / "embed.c"
    src.write_text("void bf_zz_first(int *p) { *p = 1; }\n" + (REPO / "modules/embed.c").read_text())
    bc = tmp_path / "embed.bc"
    bitcode.compile_bitcode(src, bc, cflags=toolchain.FREESTANDING_CFLAGS,
                            include_dirs=[REPO / "src/include", REPO / "src/libc/include", REPO / "modules/include"],
                            what="embed with a helper first")
    obj = tiers.compile_tier(bc.read_bytes(), "O0", "x86-64", module_name="embed")
    exports = set(libc.ProjectLibc(REPO / "src" / "libc", []).symbols())
    data = modformat.pack(obj, layer="embed", tier="O0", isa="x86-64", exports=exports)
    assert data[64] == 0xE9
    files = base_files()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    normal = run_files(tmp_path / "a", files)
    files["/MODULES/EMBED.O0"] = data
    jumped = run_files(tmp_path / "b", files)
    assert normal.code == 0 and jumped.code == 0, jumped.out[-2000:]
    assert jumped.result["tokens"] == normal.result["tokens"]

"""Issue 8, kind 3: the module loader accepts exactly what the build emits.

A module whose CRC was recomputed after tampering passes the checksum (docs/module-format.md
says why that is expected), so the structural rules must hold on their own: relocations patch
data only, in ascending non-overlapping order, RELATIVE64 only inside the stored image,
IMPORT64 with addend 0, and the entry at offset 0.  Each case is refused by the kernel (hosted
runtime) and by the build's reader (modformat.parse) alike; the real modules pass both.
"""
import struct

import pytest

from bareflow_plugins import modformat
from bareflow_plugins.errors import BareflowError
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

"""libc subset selection against the project's real libc sources."""
import pytest

from bareflow.libc import selection as libc

from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError
from conftest import ROOT


@pytest.fixture(scope="module")
def provider():
    return libc.ProjectLibc(ROOT / "src" / "libc", toolchain.FREESTANDING_CFLAGS)


def test_only_the_needed_closure_is_selected(provider, tmp_path):
    selection = libc.select({"expf": {"module ffn"}, "memcpy": {"kernel"}}, [provider], tmp_path)
    chosen = set(selection.symbols)
    assert {"expf", "memcpy"} <= chosen
    assert "qsort" not in chosen and "snprintf" not in chosen
    rows = {row["symbol"]: row for row in selection.manifest()}
    assert rows["expf"]["provider"] == "bareflow-libc" and rows["expf"]["size"] > 0
    assert rows["expf"]["needed_by"] == ["module ffn"]
    # every dependency the chosen objects pull in is itself chosen and says who needs it
    for row in rows.values():
        assert row["needed_by"]
    text = selection.manifest_text()
    assert text.splitlines()[0].startswith("# BareFlow libc manifest")
    assert any(line.startswith("expf bareflow-libc ") for line in text.splitlines())


def test_transitive_dependencies_are_followed(provider, tmp_path):
    selection = libc.select({"snprintf": {"kernel"}}, [provider], tmp_path)
    assert "vsnprintf" in selection.symbols
    assert "libc:snprintf" in selection.symbols["vsnprintf"].needed_by


def test_missing_symbol_lists_symbol_and_needers(provider, tmp_path):
    with pytest.raises(BareflowError) as err:
        libc.select({"frobnicate": {"module attn", "module ffn"}, "expf": {"module ffn"}}, [provider], tmp_path)
    assert "frobnicate: needed by module attn, module ffn" in str(err.value)
    assert "expf" not in str(err.value)


def test_provider_priority_decides(provider, tmp_path):
    class Shadow(libc.LibcProvider):
        name, priority = "shadow", 10

        def symbols(self):
            return {"expf": "shadow"}

        def object_for(self, symbol, workdir, verbose=False):
            return provider.object_for(symbol, workdir)

    selection = libc.select({"expf": {"module ffn"}}, [provider, Shadow()], tmp_path)
    assert selection.symbols["expf"].provider == "shadow"


def test_exports_source_is_sorted_and_complete():
    src = libc.exports_source({"sqrtf", "expf"})
    assert src.index('"expf"') < src.index('"sqrtf"')
    assert "bf_export_count = 2;" in src


def test_editing_a_libc_header_invalidates_the_object_cache(tmp_path):
    import shutil
    root = tmp_path / "libc"
    shutil.copytree(ROOT / "src" / "libc", root)
    provider = libc.ProjectLibc(root, toolchain.FREESTANDING_CFLAGS)
    before = provider.object_for("expf", tmp_path / "cache")
    internal = root / "math" / "math_internal.h"
    internal.write_text(internal.read_text() + "\nstatic inline int bf_cache_probe(void) { return 7; }\n")
    assert provider.object_for("expf", tmp_path / "cache") is not None
    assert len(list((tmp_path / "cache").glob("expf-*.o"))) == 2
    assert before == provider.object_for("expf", tmp_path / "cache2")  # same bytes: the edit is unused


def test_modules_import_only_functions(tmp_path):
    """A module reaches an import through a jump stub: a data symbol must stop the build."""
    import subprocess
    src = tmp_path / "mixed.c"
    src.write_text("int bf_table[4] = {1, 2, 3, 4};\nfloat bf_twice(float x) { return 2 * x; }\n")
    obj = tmp_path / "mixed.o"
    subprocess.run(toolchain.CC + toolchain.FREESTANDING_CFLAGS + ["-O2", "-c", str(src), "-o", str(obj)],
                   check=True)

    class Mixed(libc.LibcProvider):
        name = "mixed"

        def symbols(self):
            return {"bf_table": "mixed.c", "bf_twice": "mixed.c"}

        def object_for(self, symbol, workdir, verbose=False):
            return obj.read_bytes()

    fine = libc.select({"bf_twice": {"module:ffn"}, "bf_table": {"kernel"}}, [Mixed()], tmp_path)
    assert libc.module_imports(fine) == {"bf_twice"}
    bad = libc.select({"bf_twice": {"module:ffn"}, "bf_table": {"module:attn", "kernel"}}, [Mixed()], tmp_path)
    with pytest.raises(BareflowError, match=r"bf_table \(STT_OBJECT from mixed\): needed by module:attn$"):
        libc.module_imports(bad)

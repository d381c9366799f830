"""What SCons users expect: -j2 works, a no-op rebuild runs nothing, an edit rebuilds exactly its
dependents.  Runs on a copy of the repository so the edits never touch the real tree."""
import re
import shutil
import subprocess

import pytest

from buildutil import ROOT, scons

STEP = re.compile(r"^  (BC|TIER|MODULE|CC|AS|LINK|LIBC|IMAGE|GEN)\s+(\S+)", re.M)


def _steps(output):
    return [(kind, path) for kind, path in STEP.findall(output)]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    build = dest / "build"
    proc = scons(build, "image", "-j2", cwd=dest)
    assert (build / "bareflow.img").exists(), proc.stdout
    return dest


def test_noop_rebuild_runs_no_compiler(repo_copy):
    out = scons(repo_copy / "build", "image", cwd=repo_copy).stdout
    assert _steps(out) == [], out
    assert "is up to date" in out


def test_editing_one_module_rebuilds_only_its_tiers(repo_copy):
    source = repo_copy / "modules" / "rope.c"
    source.write_text(source.read_text() + "\nint bareflow_test_marker = 1;\n")
    steps = _steps(scons(repo_copy / "build", "image", cwd=repo_copy).stdout)
    kinds = {kind for kind, _ in steps}
    assert ("BC", "build/bc/rope.bc") in steps
    assert all("rope" in path for kind, path in steps if kind in ("BC", "TIER")), steps
    assert all("ROPE" in path for kind, path in steps if kind == "MODULE"), steps
    assert "IMAGE" in kinds and not kinds & {"CC", "AS"}, steps


def _rebuilt_modules(steps):
    return sorted({path.rsplit("/", 1)[-1][:-3] for kind, path in steps if kind == "BC"})


def test_editing_a_header_rebuilds_exactly_its_dependents(repo_copy):
    # A header only two modules include: the C scanner must find it through modules/include.
    include_dir = repo_copy / "modules" / "include"
    (include_dir / "test_only.h").write_text("#define BF_TEST_SCALE 1.0f\n")
    for name in ("rope", "ffn"):
        src = repo_copy / "modules" / f"{name}.c"
        src.write_text('#include "test_only.h"\n' + src.read_text())
    scons(repo_copy / "build", "image", cwd=repo_copy)
    (include_dir / "test_only.h").write_text("#define BF_TEST_SCALE 2.0f\nint bf_test_marker2 = 3;\n")
    steps = _steps(scons(repo_copy / "build", "image", cwd=repo_copy).stdout)
    assert _rebuilt_modules(steps) == ["ffn", "rope"], steps

    shared = include_dir / "layer_math.h"
    # Modules that include layer_math.h directly or through another modules/include header.
    via = {"layer_math.h"} | {h.name for h in include_dir.glob("*.h")
                              if '#include "layer_math.h"' in h.read_text()}
    dependents = sorted(p.stem for p in (repo_copy / "modules").glob("*.c")
                        if any(f'#include "{h}"' in p.read_text() for h in via))
    shared.write_text(shared.read_text() + "\n#define BF_TEST_MARKER3 4\n")   # outside the guard: only a macro may repeat
    steps = _steps(scons(repo_copy / "build", "image", cwd=repo_copy).stdout)
    assert _rebuilt_modules(steps) == dependents, steps
    assert not any(kind in ("CC", "AS") for kind, _ in steps), steps

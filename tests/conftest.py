"""Shared test set-up: import paths, and builds several test files reuse (built once per session)."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests", ROOT / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# dosfstools installs mkfs.fat/fsck.fat in /usr/sbin, which is not on a non-root user's PATH on Debian.
for _sbin in ("/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _sbin


class Build:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.image = self.dir / "bareflow.img"
        self.hosted = self.dir / "bareflow-hosted"
        self.kernel = self.dir / "kernel" / "KERNEL.BIN"


def _build(tmp_path_factory, name, *args):
    from buildutil import scons
    directory = tmp_path_factory.mktemp(name)
    proc = scons(directory, "image", "hosted", "-j2", *args)
    build = Build(directory)
    build.log = proc.stdout
    return build


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """The default image: synthetic model, tiered policy, baseline ISA."""
    return _build(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def fixed_o0_build(tmp_path_factory):
    return _build(tmp_path_factory, "fixed-o0", "POLICY=fixed", "TIER=O0")


@pytest.fixture(scope="session")
def stories_build(tmp_path_factory):
    from buildutil import stories
    model, tok = stories()
    return _build(tmp_path_factory, "stories", f"MODEL={model}", f"TOKENIZER={tok}")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (real models booted under TCG, many minutes each) are opt-in."""
    if os.environ.get("BAREFLOW_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow (many minutes under TCG): set BAREFLOW_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

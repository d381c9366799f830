"""The example third-party plugin, installed with pip into a fresh venv, is found by BareFlow."""
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "bareflow-policy-example"
PIP_ENV = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def _can_build_wheels_offline():
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        import setuptools
        major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
        return (major, minor) >= (70, 1)      # bdist_wheel moved into setuptools in 70.1
    except Exception:
        return False


def _run(args, **kwargs):
    import os
    env = {**os.environ, **PIP_ENV}
    env.pop("PYTHONPATH", None)          # the venv must find bareflow through its .pth
    env.pop("BAREFLOW_PLUGINS", None)
    env.pop("BAREFLOW_BLOCK_PLUGINS", None)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory):
    """A venv (system site-packages visible) with the example plugin pip-installed.

    Returns the venv's python.  The repository is put on its path with a .pth file.
    """
    if not _can_build_wheels_offline():
        pytest.skip("building the example offline needs the 'wheel' package or setuptools>=70.1 "
                    "(pip install wheel)")
    root = tmp_path_factory.mktemp("example-venv")
    source = root / "src"
    # Build from a copy so pip's build/ and *.egg-info never land in the repository.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                    "__pycache__"))
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    if _run([str(python), "-m", "pip", "--version"]).returncode != 0:
        shutil.rmtree(venv)                  # no pip visible from the base: let venv add one
        made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
        assert made.returncode == 0, made.stderr
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    assert purelib.returncode == 0, purelib.stderr
    # The repository, and the packages of the interpreter running the tests (when that is itself
    # a venv, --system-site-packages only shows its base interpreter's, not the pinned deps).
    import sysconfig
    visible = [str(REPO)] + sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(purelib.stdout.strip(), "bareflow_repo.pth").write_text("\n".join(visible) + "\n")
    installed = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                      str(source)])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


CHECK = textwrap.dedent("""
    import json, sys
    import bareflow
    from bareflow.core.manager import load_plugins
    from bareflow.model.layers import LAYER_NAMES, calls_per_token
    from bareflow.policy.infos import layer_infos
    from bareflow.policy.api import decide_all, registered_policies
    from bareflow.policy import table as policytable
    variables = json.loads(sys.argv[1])
    pm = load_plugins(variables)
    report = {"repo": bareflow.__file__, "policies": sorted(registered_policies(pm)),
              "plugins": {i.name: [i.version, i.source] for i in pm.plugin_infos()}}
    if "example-eager" in report["policies"]:
        cpt = calls_per_token(2)
        costs = {name: (100, 100, cpt[name]) for name in LAYER_NAMES}
        decisions = decide_all(pm, "example-eager", layer_infos(None, costs, 16), variables)
        table = policytable.encode(decisions, LAYER_NAMES)
        report["table"] = {name: [d.ladder, d.calls, d.preload]
                           for name, d in policytable.decode(table).items()}
        report["describe"] = pm.describe()
    print(json.dumps(report))
""")


def run_check(python, variables):
    result = _run([str(python), "-c", CHECK, json.dumps(variables)])
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pip_installed_plugin_is_discovered(example_venv):
    report = run_check(example_venv, {})
    assert Path(report["repo"]).resolve().parent == REPO / "bareflow"
    assert "example-eager" in report["policies"]
    assert {"tiered", "fixed", "pgo"} <= set(report["policies"])
    assert report["plugins"]["example"] == ["0.1.0", "entry point, bareflow-policy-example"]
    assert list(report["table"]) == ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn",
                                     "classify", "sampler"]
    for name, (ladder, calls, preload) in report["table"].items():
        assert ladder == ["O0", "O3"] and calls == [10] and preload, name
    assert "example  version: 0.1.0  source: entry point, bareflow-policy-example" in report["describe"]
    assert "EAGER_CALLS:" in report["describe"]


def test_installed_plugin_options_and_blocking(example_venv):
    report = run_check(example_venv, {"EAGER_CALLS": "3"})
    assert all(calls == [3] for _, calls, _ in report["table"].values())
    blocked = run_check(example_venv, {"BLOCK_PLUGINS": "example"})
    assert "example-eager" not in blocked["policies"]
    assert "example" not in blocked["plugins"]


def test_scons_image_with_the_installed_plugin_uses_its_decisions(example_venv, tmp_path):
    """The full build, run by the venv's interpreter, writes the plugin's ladders to the image."""
    from bareflow.policy import table as policytable
    from buildutil import image_file
    build = tmp_path / "build"
    proc = _run([str(example_venv), "-m", "SCons", f"BUILD_DIR={build}", "image", "POLICY=example-eager",
                 "EAGER_CALLS=4"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = policytable.decode(image_file(build / "bareflow.img", "/POLICY.TBL"))
    for name, decision in table.items():
        assert decision.ladder == ["O0", "O3"] and decision.calls == [4] and decision.preload, name
    modules = sorted(p.name for p in (build / "modules" / "x86-64").iterdir())
    assert {m.rsplit(".", 1)[1] for m in modules} == {"O0", "O3"}

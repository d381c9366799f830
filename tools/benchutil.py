"""What every benchmark script starts with: building a configuration with SCons and reading a
run's BAREFLOW-RESULT line.

The result line's format belongs to the runtime (docs/runtime.md, "Result line");
bareflow.policy.profile.find_result_line is its one parser, and this module only adapts its
error to a benchmark's exit.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bareflow.errors import BareflowError  # noqa: E402
from bareflow.policy.profile import find_result_line  # noqa: E402


def scons(build, *args):
    """Run `scons -Q BUILD_DIR=<build> <args>` in the project root, quietly; raises
    subprocess.CalledProcessError (SCons's own message is on stderr) when the build fails."""
    subprocess.run([sys.executable, "-m", "SCons", "-Q", f"BUILD_DIR={build}", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def result_of(output, source="the run's output"):
    """The parsed JSON (dict) of the last BAREFLOW-RESULT line of a run's console output; exits
    with the parser's message and the output's tail when there is none (the run failed)."""
    try:
        return find_result_line(output, source)[1]
    except BareflowError as exc:
        raise SystemExit(f"{exc}; the output ended:\n{output[-2000:]}") from None

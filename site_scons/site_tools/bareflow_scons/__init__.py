"""SCons tool `bareflow_scons`: builders for the BareFlow unikernel image (see docs/build.md).

generate(env) adds the builders and the BareflowProject() method that declares every target;
exists(env) says whether zig's clang and llvmlite can be imported.
"""
import importlib.util
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _REPO not in sys.path:          # bareflow lives at the repository's top level
    sys.path.insert(0, _REPO)


def exists(env):
    return all(importlib.util.find_spec(m) for m in ("ziglang", "llvmlite", "elftools", "pluggy"))


def generate(env):
    from . import builders, project
    builders.add_builders(env)
    env.AddMethod(project.setup, "BareflowProject")


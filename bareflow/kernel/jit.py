"""Built-in plugin: the run-time compiler choice (JIT=none | llvm; docs/jit.md).

It declares the JIT and JIT_TIMEOUT_MS variables (the latter is written into /BAREFLOW.CFG as
jit_timeout_ms by bareflow.image.bootconfig) and, with JIT=llvm, puts every layer's tier-neutral bitcode on the
image as /MODULES/<LAYER>.BC (docs/bitcode-file.md) through `bareflow_image_files`, the same
hook the built-in payload uses.  With JIT=none it adds nothing: the image, the policy table and
the kernel are those of an ahead-of-time-only build.  How LLVM is found and linked is
bareflow/kernel/llvmjit.py; the kernel link with LLVM is bareflow/kernel/jit_recipe.py.
"""
from __future__ import annotations

from typing import Mapping

from bareflow import hookimpl
from bareflow.core.variables import Variable
from bareflow.errors import BareflowError

MODES = ("none", "llvm")
DEFAULT = "none"


def mode(variables: Mapping[str, str]) -> str:
    """"none" or "llvm" from the JIT variable; BareflowError naming the variable otherwise."""
    jit = str(variables.get("JIT", DEFAULT) or DEFAULT).strip()
    if jit not in MODES:
        raise BareflowError(f"JIT={jit!r}: expected one of {', '.join(MODES)}")
    return jit


@hookimpl
def bareflow_register_variables():
    from bareflow.image import bootconfig
    return [Variable("JIT", "run-time compiler linked into the kernel and the hosted program: none "
                     "(ahead-of-time tiers only) or llvm (LLVM 22; run-time tiers, docs/jit.md)",
                     DEFAULT, kind="enum", allowed=MODES),
            Variable("JIT_TIMEOUT_MS", "with JIT=llvm: jit_timeout_ms written to /BAREFLOW.CFG, how long a "
                     "compile on the spare core may take before it is reported and its layer keeps its tier "
                     f"({bootconfig.JIT_TIMEOUT_MS[0]}..{bootconfig.JIT_TIMEOUT_MS[1]})",
                     str(bootconfig.JIT_TIMEOUT_MS_DEFAULT), kind="int", low=bootconfig.JIT_TIMEOUT_MS[0],
                     high=bootconfig.JIT_TIMEOUT_MS[1])]


@hookimpl
def bareflow_image_files(variables, files, products):
    if mode(variables) == "none":
        return
    bitcode = products.get("bitcode")
    if not bitcode:
        raise BareflowError("JIT=llvm: the build made no layer bitcode files for the image")
    files.update(bitcode)

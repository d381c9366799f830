"""The core build plugin: the variables every pipeline step reads, and the variable table.

It is registered before every other plugin and cannot be blocked (the steps cannot run without
these variables).  Features declare their own variables in their own plugin modules (policy
options, the boot configuration, `scons run`, `scons flash`); `declared_variables` gathers them all.
"""
from __future__ import annotations

from bareflow import hookimpl
from bareflow.core.variables import Variable
from bareflow.errors import BareflowError
from bareflow.tiers.levels import parse_isa_list

CORE_VARIABLES = [
    Variable("BUILD_DIR", "where every output goes", "build"),
    Variable("CACHE_DIR", "shared cache of built files (SCons CacheDir): a directory a team or CI "
             "fleet shares; empty = no cache", ""),
    Variable("VERBOSE", "print full commands", "no", kind="bool"),
    Variable("PLUGINS", "extra plugin modules to load, comma-separated", ""),
    Variable("BLOCK_PLUGINS", "plugin names not to load, comma-separated", ""),
    Variable("MODEL", "llama2.c checkpoint or GGUF file (default: the generated synthetic model)", "",
             kind="path"),
    Variable("TOKENIZER", "llama2.c tokenizer for MODEL (a GGUF MODEL carries its own)", "", kind="path"),
    Variable("WEIGHTS", "weight types on the image: auto (a GGUF's F32/F16/Q4_0/Q4_1/Q8_0 kept, others to "
             "Q8_0), f32, f16, q8_0 or q4_0 (docs/weights-format.md)",
             ""),
    Variable("SEQ_LEN", "most positions a run may use (default: the model's context length)", ""),
    Variable("POLICY", "JIT policy name (see `scons plugins`)", "tiered"),
    Variable("PROFILE", "runtime profile (PROFILE.BIN or a serial log) handed to the policy", "",
             kind="path", must_exist=True),
    Variable("ISA", "ISA levels the tiers are compiled for, comma-separated; the kernel runs the best "
             "one the CPU supports (x86-64, x86-64-v2, x86-64-v3, x86-64-v4)", "x86-64",
             validator=lambda name, text: parse_isa_list(text, name)),
    Variable("LIBC_INLINE", "link bitcode libc into modules before tiering", "no", kind="bool"),
    Variable("LIBC_PREFER", "libc provider asked first, by name (see `scons plugins`)", ""),
    Variable("BOOTLOADERS", "bootloader plugins that go on the image, comma-separated", "syslinux,uefi"),
    Variable("IMAGE", "image for `scons run`/`scons profile`/`scons flash` "
             "(default: BUILD_DIR/bareflow.img)", "", kind="path"),
]


@hookimpl
def bareflow_register_variables():
    return list(CORE_VARIABLES)


def declared_variables(pm) -> dict[str, list[Variable]]:
    """{plugin name: [Variable, ...]} in plugin registration order, each declaration checked.

    Besides `bareflow_register_variables`, a registered policy's `options` ({NAME: help}) declare
    string variables owned by the policy's plugin, unless some plugin declares that name itself.
    Raises BareflowError naming the plugin for a malformed or twice-declared variable.
    """
    from bareflow.policy.api import registered_policies, policy_owner
    grouped: dict[str, list[Variable]] = {name: [] for name in pm.plugin_names()}
    names = set()
    for reg in pm.registrations("bareflow_register_variables"):
        if not isinstance(reg.obj, Variable):
            raise BareflowError(f"plugin {reg.plugin!r}: bareflow_register_variables returned "
                                f"{reg.obj!r}, not a bareflow.Variable")
        reg.obj.check_declaration(f"plugin {reg.plugin!r}")
        grouped[reg.plugin].append(reg.obj)
        names.add(reg.name)
    for policy_name, policy in registered_policies(pm).items():
        owner = policy_owner(pm, policy_name)
        for option, text in sorted(getattr(policy, "options", {}).items()):
            if option not in names:
                variable = Variable(option, f"{text} (policy {policy_name})")
                variable.check_declaration(f"plugin {owner!r}, policy {policy_name!r}")
                grouped[owner].append(variable)
                names.add(option)
    return {plugin: variables for plugin, variables in grouped.items() if variables}

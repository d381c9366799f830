"""The BareFlow plugin contract: every hook a plugin may implement.

This module is the single source of truth for the plugin API (documented in docs/hooks.md).
Built-in behaviour (policies, the libc provider, bootloaders, flash targets) is implemented as
ordinary plugins on these same hooks, so a third party can add to or replace any of it.

Conventions:
* Registration hooks (`bareflow_register_*`) return a list of objects (or None); the manager
  collects them from every plugin and rejects duplicate names, naming both plugins.
* Mutating hooks receive a mutable object and change it in place.
* Every argument is passed by keyword; an implementation may accept any subset of them,
  but an argument name that is not listed here is an error at load time.
"""
import pluggy

PROJECT = "bareflow"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def bareflow_configure(variables):
    """Called once after all plugins are loaded, before anything is built.

    `variables` is a read-only mapping of the build variables (MODEL, POLICY, TIER, ISA, ...).
    Raise BareflowError to stop the build with a message.
    """


@hookspec
def bareflow_module_cflags(module, cflags, variables):
    """Edit the clang flags used to compile one layer module to bitcode.

    `module` is the layer name ("rmsnorm"); `cflags` is a list to change in place (append to
    add a flag, remove to drop one).  Runs for every module on every build, so keep it cheap
    and deterministic: the flags are part of the build signature.
    """


@hookspec
def bareflow_register_policies():
    """Return a list of `bareflow_plugins.policy.Policy` objects (name, description, decide)."""


@hookspec
def bareflow_register_libc_providers():
    """Return a list of `bareflow_plugins.libc.LibcProvider` objects.

    Providers are consulted in order of their `priority` (lower first); the first provider
    that has a symbol provides it.
    """


@hookspec
def bareflow_register_bootloaders():
    """Return a list of `bareflow_plugins.bootloader.Bootloader` objects (name, files, install)."""


@hookspec
def bareflow_register_flash_targets():
    """Return a list of `bareflow_plugins.flash.FlashTarget` objects with their capabilities."""


@hookspec
def bareflow_image_files(variables, files):
    """Add or replace files on the image's FAT16 partition.

    `files` is a dict mapping an absolute 8.3 path ("/EXTRA/NOTES.TXT") to bytes; put entries in
    it.  It starts empty: the built-in files (kernel, modules, policy table, model, ...) are still
    to be built when plugins are asked, so an entry with the same path as one of them replaces it.
    Called at read time, once per build; the bytes are part of the image's build signature.
    """


@hookspec
def bareflow_policy_decided(layer, decision):
    """Observe (and possibly adjust in place) one layer's validated policy decision.

    Called after the chosen policy answered for `layer` (a LayerInfo) and before the policy
    table is written; the decision is validated again afterwards.
    """

"""The BareFlow plugin contract: every hook a plugin may implement.

This module is the single source of truth for the plugin API (documented in docs/hooks.md).
Built-in behaviour (the image's files, the module cflags, policies, libc providers, bootloaders,
flash targets and the variables each reads) is implemented as ordinary plugins on these same
hooks, so a third party can add to or replace any of it.

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
    add a flag, remove to drop one).  It starts empty: the built-in plugin bareflow.bitcode.cflags
    adds the freestanding target flags first, and later plugins see and may change them.  Runs for every module on every build, so keep it cheap
    and deterministic: the flags are part of the build signature.
    """


@hookspec
def bareflow_register_policies():
    """Return a list of `bareflow.Policy` objects (name, description, decide, options)."""


@hookspec
def bareflow_register_libc_providers():
    """Return a list of `bareflow.LibcProvider` objects.

    Providers are consulted in order of their `priority` (lower first); the first provider
    that has a symbol provides it.
    """


@hookspec
def bareflow_register_bootloaders():
    """Return a list of `bareflow.Bootloader` objects (name, files, install)."""


@hookspec
def bareflow_register_flash_targets():
    """Return a list of `bareflow.FlashTarget` objects with their capabilities."""


@hookspec
def bareflow_register_variables():
    """Return a list of `bareflow.Variable` objects: the build variables this plugin reads.

    Like a pytest plugin's options: `scons -h` shows them under the plugin's name, their values
    are checked (kind, allowed values, validator) before anything is built, and a variable no
    loaded plugin declares is an error.  Blocking a plugin removes its variables.
    """


@hookspec
def bareflow_image_files(variables, files, products):
    """Add, replace or remove files on the image's FAT16 partition.

    `files` maps an absolute 8.3 path ("/EXTRA/NOTES.TXT") to the file's content: bytes, or the
    path (str) of a file to copy, such as one of `products`.  Plugins are asked in registration
    order (built-ins first) and each sees what the earlier ones put, so a third-party plugin can
    replace any built-in file.  `products` names what the build makes (docs/hooks.md): "kernel",
    "libc_manifest", "policy_table", "profile", "model", "tokenizer" (paths of build outputs),
    "modules" ({"/MODULES/QKV.O2": path, ...}) and "model_config" (the model's ModelConfig).
    Called at read time, once per build; bytes are part of the image's build signature.
    """


@hookspec
def bareflow_policy_decided(layer, decision):
    """Observe (and possibly adjust in place) one layer's validated policy decision.

    Called after the chosen policy answered for `layer` (a LayerInfo) and before the policy
    table is written; the decision is validated again afterwards.
    """

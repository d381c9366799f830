"""Deprecated alias of `bareflow`, kept for one release (0.2) so plugins written for 0.1 still load.

`import bareflow_plugins` warns once (DeprecationWarning) and re-exports the public API; the 0.1
module names (bareflow_plugins.policy, bareflow_plugins.fat16, ...) resolve to the modules that
now hold their contents.  New code imports from `bareflow` (docs/hooks.md).
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

import bareflow
from bareflow import *  # noqa: F401,F403  (the public API, under the old name)
from bareflow import __all__, __version__  # noqa: F401

warnings.warn("the 'bareflow_plugins' package is deprecated; import from 'bareflow' instead "
              "(removed in BareFlow 0.3)", DeprecationWarning, stacklevel=2)

# 0.1 module name -> 0.2 module that holds its contents.
ALIASES = {
    "bareflow_plugins.errors": "bareflow.errors",
    "bareflow_plugins.hookspecs": "bareflow.hookspecs",
    "bareflow_plugins.manager": "bareflow.core.manager",
    "bareflow_plugins.model": "bareflow.model.checkpoint",
    "bareflow_plugins.tokenizer": "bareflow.model.tokenizer",
    "bareflow_plugins.synthetic": "bareflow.model.synthetic",
    "bareflow_plugins.reference": "bareflow.model.reference",
    "bareflow_plugins.layers": "bareflow.model.layers",
    "bareflow_plugins.policy": "bareflow.policy.api",
    "bareflow_plugins.policytable": "bareflow.policy.table",
    "bareflow_plugins.profile": "bareflow.policy.profile",
    "bareflow_plugins.toolchain": "bareflow.bitcode.toolchain",
    "bareflow_plugins.tiers": "bareflow.tiers.compile",
    "bareflow_plugins.libc": "bareflow.libc.selection",
    "bareflow_plugins.modformat": "bareflow.modules.modformat",
    "bareflow_plugins.fat16": "bareflow.image.fat16",
    "bareflow_plugins.bootloader": "bareflow.image.bootloader",
    "bareflow_plugins.flash": "bareflow.flash",
    "bareflow_plugins.flash.target": "bareflow.flash.target",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the 0.1 names to the already-importable 0.2 modules (no second copy is made)."""

    def find_spec(self, name, path=None, target=None):
        if name in ALIASES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(ALIASES[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.append(_AliasFinder())

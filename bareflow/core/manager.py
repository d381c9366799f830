"""Finding, checking and calling BareFlow plugins.

Plugins come from three places, registered in this order: the built-ins
(bareflow.core.builtin.BUILTIN_PLUGINS, after the core build plugin that cannot be blocked), distributions exposing the `bareflow` entry-point
group, and modules named in the PLUGINS build variable or the BAREFLOW_PLUGINS environment
variable.  BLOCK_PLUGINS / BAREFLOW_BLOCK_PLUGINS drop plugins by name before they are imported,
which is how a third party replaces a built-in.

Every mistake a plugin author can make is turned into a BareflowError that names the plugin:
a misspelled hook, an argument the hook does not provide, an exception inside a hook, a
registration hook returning junk, two plugins registering the same name.
"""
import dataclasses
import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pluggy

from bareflow import hookspecs
from bareflow.core import builtin as _builtin
from bareflow.errors import BareflowError, where_raised

ENTRY_POINT_GROUP = "bareflow"
HOOK_PREFIX = "bareflow_"
REGISTER_PREFIX = "bareflow_register_"

# The manager calls these hooks implementation by implementation so that each result (and
# each failure) can be traced to its plugin; a wrapper around them would never run.
PER_PLUGIN_HOOKS = frozenset({
    "bareflow_register_policies",
    "bareflow_register_libc_providers",
    "bareflow_register_bootloaders",
    "bareflow_register_flash_targets",
    "bareflow_register_variables",
    "bareflow_policy_decided",
    "bareflow_image_files",
})

_SINGULAR = {"policies": "policy", "libc_providers": "libc provider",
             "bootloaders": "bootloader", "flash_targets": "flash target", "variables": "variable"}
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
# Shown by describe(), in this order, when a registered object has them.
_DESCRIBED_ATTRIBUTES = ("priority", "files", "capabilities", "options")


class PluginHookError(BareflowError):
    """An exception escaped from one plugin's hook implementation.

    A BareflowError is a refusal the plugin worded for the user: its message leads, after the
    plugin's name (left out for BareFlow's own plugins, `bareflow.*`, whose messages name the
    culprit).  Any other exception is a plugin bug: its type, message and the file and line
    that raised it are shown, for the plugin's author.
    """

    def __init__(self, plugin: str, hook: str, exc: BaseException):
        self.plugin = plugin
        self.hook = hook
        if isinstance(exc, BareflowError):
            text = str(exc) if plugin.startswith("bareflow.") else f"plugin {plugin!r}: {exc}"
        else:
            text = f"plugin {plugin!r} failed in hook {hook}: {type(exc).__name__}: {exc}{where_raised(exc)}"
        super().__init__(text)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str          # "builtin", "entry point (dist)", "explicit (PLUGINS)", ...
    plugin: Any


@dataclass(frozen=True)
class Registration:
    name: str            # the registered object's name
    obj: Any
    plugin: str          # name of the plugin that registered it


def _guard(func, plugin_name: str, hook_name: str):
    """Wrap one hook implementation so that its failures name the plugin and hook."""
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def guarded_wrapper(*args):
            try:
                return (yield from func(*args))
            except PluginHookError:
                raise      # an inner implementation failed; it is already named
            except Exception as exc:
                raise PluginHookError(plugin_name, hook_name, exc) from exc
        return guarded_wrapper

    @functools.wraps(func)
    def guarded(*args):
        try:
            return func(*args)
        except PluginHookError:
            raise
        except Exception as exc:
            raise PluginHookError(plugin_name, hook_name, exc) from exc
    return guarded


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


class BareflowPluginManager(pluggy.PluginManager):
    """A pluggy PluginManager that validates plugins and knows where each came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.hook_names = sorted(n for n in dir(hookspecs) if n.startswith(HOOK_PREFIX))
        self._infos: dict[str, PluginInfo] = {}
        self._blocked: dict[str, str] = {}       # plugin name -> where the block came from
        self._registrations: dict[str, list[Registration]] = {}

    # --- registration -------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin, name):
        # Like pytest: a routine named bareflow_* is a hook implementation even without the
        # @hookimpl marker, so a forgotten decorator cannot silently disable a hook.
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX):
            if inspect.isroutine(getattr(plugin, name, None)):
                opts = {}
        return opts

    def block(self, name: str, origin: str = "BLOCK_PLUGINS") -> None:
        self._blocked.setdefault(name, origin)
        self.set_blocked(name)

    def register(self, plugin, name=None, *, version=None, source="registered directly"):
        name = name or self.get_canonical_name(plugin)
        if self.is_blocked(name):
            return None
        if name in self._infos:
            raise BareflowError(
                f"two plugins are named {name!r}: one from {self._infos[name].source}, "
                f"one from {source}; block one with BLOCK_PLUGINS={name} or rename it")
        if self.is_registered(plugin):
            raise BareflowError(f"plugin {name!r} ({source}) is already registered as "
                                f"{self.get_name(plugin)!r}")
        self._check_plugin(plugin, name)
        try:
            registered = super().register(plugin, name)
        except pluggy.PluginValidationError as exc:
            if self.is_registered(plugin):
                super().unregister(plugin)      # pluggy leaves half a registration behind
            detail = " ".join(str(exc).split())
            raise BareflowError(f"plugin {name!r} is invalid: {detail}") from exc
        if registered is None:
            return None
        for caller in self.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function = _guard(impl.function, name, caller.name)
        if version is None:
            version = str(getattr(plugin, "__version__", "unversioned"))
        self._infos[name] = PluginInfo(name, version, source, plugin)
        self._registrations.clear()
        return name

    def unregister(self, plugin=None, name=None):
        removed = super().unregister(plugin, name)
        for key, info in list(self._infos.items()):
            if info.plugin is removed:
                del self._infos[key]
        self._registrations.clear()
        return removed

    def _check_plugin(self, plugin, name: str) -> None:
        """Reject misspelled hooks and unknown arguments before pluggy sees the plugin."""
        for attr in sorted(dir(plugin)):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            hook_name = opts.get("specname") or attr
            if hook_name not in self.hook_names:
                close = difflib.get_close_matches(hook_name, self.hook_names, n=1, cutoff=0.6)
                hint = (f"did you mean {close[0]}?" if close
                        else "known hooks: " + ", ".join(self.hook_names))
                raise BareflowError(
                    f"plugin {name!r} implements {hook_name}, which is not a BareFlow hook; {hint}")
            spec_args = self.hook_caller(hook_name).spec.argnames
            try:
                params = inspect.signature(getattr(plugin, attr)).parameters.values()
            except (TypeError, ValueError):
                continue   # pluggy cannot inspect it either; it will be called without args
            for param in params:
                required = param.default is param.empty
                if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and required:
                    if param.name not in spec_args:
                        provided = ", ".join(spec_args) or "no arguments"
                        raise BareflowError(
                            f"plugin {name!r}: hook {hook_name} has no argument {param.name!r} "
                            f"(it provides: {provided})")
                elif param.kind == param.KEYWORD_ONLY and required:
                    raise BareflowError(
                        f"plugin {name!r}: hook {hook_name}: keyword-only argument "
                        f"{param.name!r} is never passed; make it a plain parameter")
            if hook_name in PER_PLUGIN_HOOKS and (opts.get("wrapper") or opts.get("hookwrapper")):
                raise BareflowError(
                    f"plugin {name!r}: hook {hook_name} cannot be implemented as a wrapper "
                    f"(its implementations are called one by one)")

    def hook_caller(self, hook_name: str):
        return getattr(self.hook, hook_name)

    # --- introspection ------------------------------------------------------------------

    def plugin_infos(self) -> list[PluginInfo]:
        """Registered plugins in registration order."""
        return list(self._infos.values())

    def plugin_names(self) -> list[str]:
        """Registered plugin names in registration order."""
        return list(self._infos)

    def blocked_plugins(self) -> dict[str, str]:
        return dict(self._blocked)

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.get_plugin(name)
        return sorted(c.name for c in self.get_hookcallers(plugin) or [])

    # --- calling ------------------------------------------------------------------------

    def call_each(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        """Call every implementation of a hook in pluggy's order; return (plugin, result) pairs.

        Unlike `pm.hook.<name>(...)` this keeps None results and tells which plugin gave
        which answer.  Wrapper implementations are skipped (they are refused at load time
        for the hooks the manager calls this way).
        """
        caller = self.hook_caller(hook_name)
        missing = [a for a in caller.spec.argnames if a not in kwargs]
        if missing:
            raise BareflowError(f"internal: hook {hook_name} called without {missing}")
        results = []
        for impl in reversed(caller.get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:
                continue
            results.append((impl.plugin_name, impl.function(*[kwargs[a] for a in impl.argnames])))
        return results

    def registrations(self, hook_name: str) -> list[Registration]:
        """Objects returned by a registration hook, in plugin registration order.

        Each object needs a non-empty string `name`; names must be unique across plugins.
        """
        if not hook_name.startswith(HOOK_PREFIX):
            hook_name = REGISTER_PREFIX + hook_name
        if not hook_name.startswith(REGISTER_PREFIX) or hook_name not in self.hook_names:
            known = ", ".join(n for n in self.hook_names if n.startswith(REGISTER_PREFIX))
            raise BareflowError(f"{hook_name} is not a registration hook; known: {known}")
        if hook_name in self._registrations:
            return list(self._registrations[hook_name])
        order = {name: index for index, name in enumerate(self._infos)}
        answers = sorted(self.call_each(hook_name), key=lambda pair: order.get(pair[0], len(order)))
        kind = hook_name[len(REGISTER_PREFIX):]
        seen: dict[str, Registration] = {}
        for plugin_name, result in answers:
            if result is None:
                continue
            if not isinstance(result, (list, tuple)):
                raise BareflowError(f"plugin {plugin_name!r}: {hook_name} must return a list, "
                                    f"not {type(result).__name__}")
            for obj in result:
                obj_name = getattr(obj, "name", None)
                if not isinstance(obj_name, str) or not obj_name.strip() or obj_name != obj_name.strip():
                    raise BareflowError(f"plugin {plugin_name!r}: {hook_name} returned {obj!r}, "
                                        f"which has no usable 'name' (a non-empty string)")
                if obj_name in seen:
                    first = seen[obj_name].plugin
                    raise BareflowError(
                        f"{_SINGULAR.get(kind, kind)} {obj_name!r} is registered by "
                        f"plugin {first!r} and again by plugin {plugin_name!r}; block one of them "
                        f"with BLOCK_PLUGINS=<plugin name>")
                seen[obj_name] = Registration(obj_name, obj, plugin_name)
        self._registrations[hook_name] = list(seen.values())
        return list(seen.values())

    def registered(self, hook_name: str) -> dict[str, Any]:
        """name -> object for a registration hook ("policies" or "bareflow_register_policies")."""
        return {r.name: r.obj for r in self.registrations(hook_name)}

    # --- reporting ----------------------------------------------------------------------

    def describe(self) -> str:
        """The text `scons plugins` prints."""
        infos = self.plugin_infos()
        head = f"BareFlow plugins: {len(infos)} loaded"
        if self._blocked:
            head += f", {len(self._blocked)} blocked"
        lines = [head]
        by_plugin: dict[str, list[tuple[str, Registration]]] = {}
        for hook_name in self.hook_names:
            if hook_name.startswith(REGISTER_PREFIX):
                kind = hook_name[len(REGISTER_PREFIX):].replace("_", " ")
                for reg in self.registrations(hook_name):
                    by_plugin.setdefault(reg.plugin, []).append((kind, reg))
        for info in infos:
            lines.append("")
            lines.append(f"{info.name}  version: {info.version}  source: {info.source}")
            lines.append("  hooks: " + (", ".join(self.hooks_of(info.name)) or "(none)"))
            current_kind = None
            for kind, reg in by_plugin.get(info.name, []):
                if kind != current_kind:
                    lines.append(f"  {kind}:")
                    current_kind = kind
                summary = _first_line(getattr(reg.obj, "description", ""))
                lines.append(f"    {reg.name}" + (f" - {summary}" if summary else ""))
                lines.extend(_describe_attributes(reg.obj))
        for name, origin in sorted(self._blocked.items()):
            lines.append("")
            lines.append(f"{name} [blocked by {origin}]")
        return "\n".join(lines) + "\n"


def _describe_attributes(obj) -> list[str]:
    lines = []
    for attr in _DESCRIBED_ATTRIBUTES:
        value = getattr(obj, attr, None)
        if value is None or value == {} or value == [] or callable(value):
            continue
        if dataclasses.is_dataclass(value):
            # A dataclass (e.g. flash Capabilities) reads best in its declared field order.
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        elif isinstance(value, Mapping):
            value = {key: value[key] for key in sorted(value, key=str)}
        if isinstance(value, Mapping):
            lines.append(f"      {attr}:")
            for key in value:
                text = value[key]
                if isinstance(text, bool):
                    text = "yes" if text else "no"
                lines.append(f"        {key}: {text}")
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(map(str, value)) if isinstance(value, (set, frozenset)) else map(str, value)
            lines.append(f"      {attr}: " + ", ".join(items))
        else:
            lines.append(f"      {attr}: {value}")
    return lines


def _split_names(value: Any, variable: str) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if not _MODULE_NAME.match(item):
            hint = ""
            if "/" in item or item.endswith(".py"):
                hint = ("; name the module as Python imports it (x for x.py) and put its directory on "
                        "PYTHONPATH, or pip install the plugin")
            raise BareflowError(f"{variable}: {item!r} is not a plugin or module name{hint}")
        if item not in names:
            names.append(item)
    return names


def _import(module_name: str, what: str):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise BareflowError(f"{what} cannot be imported: {type(exc).__name__}: {exc}") from exc


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """`bareflow` entry points sorted by name, duplicates across sys.path collapsed."""
    chosen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        other = chosen.get(ep.name)
        if other is None:
            chosen[ep.name] = ep
        elif other.value != ep.value:
            raise BareflowError(
                f"two distributions provide the bareflow plugin {ep.name!r}: "
                f"{_dist_label(other)} ({other.value}) and {_dist_label(ep)} ({ep.value})")
    return [chosen[name] for name in sorted(chosen)]


def _dist_label(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def load_plugins(variables: Mapping[str, str], *, entry_points: bool = True,
                 environ: Mapping[str, str] | None = None) -> BareflowPluginManager:
    """Register built-in, entry-point and explicit plugins; return the manager.

    `variables` are the build variables (PLUGINS, BLOCK_PLUGINS, ...); `environ` defaults to
    os.environ (BAREFLOW_PLUGINS, BAREFLOW_BLOCK_PLUGINS).  bareflow_configure is not called
    here: the caller calls it once, when it is about to build (so `scons plugins` works with
    any variables).
    """
    env = os.environ if environ is None else environ
    pm = BareflowPluginManager()
    blocked = {}
    for origin, value in (("BLOCK_PLUGINS", variables.get("BLOCK_PLUGINS")),
                          ("BAREFLOW_BLOCK_PLUGINS", env.get("BAREFLOW_BLOCK_PLUGINS"))):
        for name in _split_names(value, origin):
            blocked.setdefault(name, origin)
    if _builtin.CORE_PLUGIN in blocked:
        raise BareflowError(f"{blocked[_builtin.CORE_PLUGIN]} names {_builtin.CORE_PLUGIN!r}, the core of "
                            "the build, which cannot be blocked")
    for name, origin in blocked.items():
        pm.block(name, origin)
    known = {_builtin.CORE_PLUGIN}
    pm.register(_import(_builtin.CORE_PLUGIN, "the core build plugin"), _builtin.CORE_PLUGIN,
                version="builtin", source="builtin (core)")

    for module_name in _builtin.BUILTIN_PLUGINS:
        known.add(module_name)
        if pm.is_blocked(module_name):
            continue
        module = _import(module_name, f"built-in plugin {module_name!r}")
        pm.register(module, module_name, version="builtin", source="builtin")

    if entry_points:
        for ep in _entry_points():
            known.add(ep.name)
            if pm.is_blocked(ep.name):
                continue
            label = _dist_label(ep)
            try:
                plugin = ep.load()
            except Exception as exc:
                dist = getattr(getattr(ep, "dist", None), "name", None)
                remedy = f"pip uninstall {dist}" if dist else "uninstall it"
                raise BareflowError(f"plugin {ep.name!r} (entry point {ep.value!r} of {label}) "
                                    f"cannot be loaded: {type(exc).__name__}: {exc}; build without it with "
                                    f"BLOCK_PLUGINS={ep.name}, or {remedy}") from exc
            if pm.is_registered(plugin):
                continue
            version = ep.dist.version if getattr(ep, "dist", None) is not None else "unknown"
            dist_name = ep.dist.metadata["Name"] if getattr(ep, "dist", None) is not None else "?"
            pm.register(plugin, ep.name, version=version, source=f"entry point, {dist_name}")

    explicit = [(name, "PLUGINS") for name in _split_names(variables.get("PLUGINS"), "PLUGINS")]
    explicit += [(name, "BAREFLOW_PLUGINS")
                 for name in _split_names(env.get("BAREFLOW_PLUGINS"), "BAREFLOW_PLUGINS")]
    for module_name, origin in explicit:
        known.add(module_name)
        if pm.is_blocked(module_name):
            continue
        module = _import(module_name, f"plugin {module_name!r} named in {origin}")
        if pm.is_registered(module) or module_name in pm._infos:
            continue     # already loaded as a built-in, an entry point or named twice
        pm.register(module, module_name, source=f"explicit, {origin}")

    unknown = [name for name in blocked if name not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "(none)"
        raise BareflowError(
            f"{blocked[unknown[0]]} names plugin {unknown[0]!r}, which does not exist; "
            f"known plugins: {names}")

    return pm

"""Entry points the build (`scons flash`) and the command line call.

flash_image() runs the whole flow: pick the target, load and validate the block map, let the
target check (refuse) the device, ask for confirmation, write, verify.  Nothing is written
before every check and the confirmation have passed.
"""
import os

from bareflow.core.variables import flag
from bareflow.errors import BareflowError
from bareflow.flash import safety
from bareflow.flash.bmap import load_blockmap
from bareflow.flash.target import Capabilities, FlashContext, FlashTarget, NAME_CHARS

DEFAULT_TARGET = "raw"


def _validate_target(t, plugin):
    where = f"flash target {getattr(t, 'name', t)!r} from plugin {plugin}"
    if not isinstance(t, FlashTarget):
        raise BareflowError(f"{where}: is a {type(t).__name__}, not a bareflow.flash.FlashTarget")
    if not t.name or not set(t.name) <= NAME_CHARS:
        raise BareflowError(f"{where}: name must be non-empty lower-case letters, digits, '-' or '_'")
    if not isinstance(t.capabilities, Capabilities):
        raise BareflowError(f"{where}: capabilities must be a Capabilities object")
    if not isinstance(t.options, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in t.options.items()):
        raise BareflowError(f"{where}: options must be a dict of option name -> help text")
    for method in ("check", "write"):
        if getattr(type(t), method) is getattr(FlashTarget, method):
            raise BareflowError(f"{where}: does not implement {method}()")


def available_targets(plugin_manager=None):
    """{name: FlashTarget} from every plugin's bareflow_register_flash_targets.

    Without a plugin manager only the built-in targets are loaded.  Duplicate names are an
    error naming both plugins.
    """
    if plugin_manager is None:
        from bareflow.flash import builtin as flash_targets
        pairs = [("bareflow.flash.builtin", t)
                 for t in flash_targets.bareflow_register_flash_targets()]
    elif hasattr(plugin_manager, "registrations"):
        # The build's BareflowPluginManager: it already traced each object to its plugin.
        pairs = [(r.plugin, r.obj) for r in plugin_manager.registrations("bareflow_register_flash_targets")]
    else:
        pairs = [(impl.plugin_name, t)
                 for impl in plugin_manager.hook.bareflow_register_flash_targets.get_hookimpls()
                 for t in impl.function() or []]
    found, owner = {}, {}
    for plugin, t in pairs:
        _validate_target(t, plugin)
        if t.name in found:
            raise BareflowError(f"flash target {t.name!r} is registered twice: by plugin "
                                f"{owner[t.name]} and by plugin {plugin}")
        found[t.name], owner[t.name] = t, plugin
    return dict(sorted(found.items()))


def flash_image(image, device, target=DEFAULT_TARGET, *, bmap=None, assume_yes=False,
                force_non_removable=False, options=None, quiet=False, plugin_manager=None,
                ctx=None):
    """Flash `image` to `device` with the named target; returns a FlashReport.

    Raises BareflowError for every refusal, a declined confirmation, or a failed verification.
    `ctx` (a FlashContext) overrides the keyword settings; tests use it to inject seams.
    """
    image = str(image)
    if not device:
        raise BareflowError("no DEVICE given: say which disk/file/directory to flash, e.g. DEVICE=/dev/sdb")
    if ctx is None:
        ctx = FlashContext(assume_yes=assume_yes, force_non_removable=force_non_removable,
                           quiet=quiet, options=dict(options or {}))
    targets = available_targets(plugin_manager)
    if target not in targets:
        raise BareflowError(f"unknown FLASH_TARGET {target!r}; available: "
                            f"{', '.join(targets) or 'none (no plugin registers a flash target)'}")
    t = targets[target]
    unknown = sorted(set(ctx.options) - set(t.options))
    if unknown:
        raise BareflowError(f"flash target {target!r} has no option {', '.join(unknown)}; "
                            f"its options: {', '.join(t.options) or 'none'}")
    if not os.path.isfile(image):
        raise BareflowError(f"image {image} does not exist; build it first (scons)")
    blockmap = load_blockmap(image, bmap)
    info = t.check(device, image, ctx)
    safety.confirm(info, image, blockmap.image_size, ctx)
    report = t.write(device, image, blockmap, ctx)
    if blockmap.note:
        report.notes.append(blockmap.note)
    return report


def options_from_string(text, variable="FLASH_OPTIONS"):
    """"name=value,name=value" -> dict (target options on the SCons command line)."""
    options = {}
    for item in filter(None, (part.strip() for part in str(text or "").split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BareflowError(f"{variable}: {item!r} is not NAME=VALUE")
        options[name.strip()] = value.strip()
    return options


def flash_from_variables(plugin_manager, variables):
    """`scons flash`: IMAGE, DEVICE, FLASH_TARGET, YES, FORCE_NON_REMOVABLE, and optionally
    BMAP and FLASH_OPTIONS ("name=value,..."), read from the build variables."""
    report = flash_image(
        variables.get("IMAGE", ""), variables.get("DEVICE", ""),
        variables.get("FLASH_TARGET", "") or DEFAULT_TARGET,
        bmap=variables.get("BMAP") or None,
        assume_yes=flag(variables, "YES"),
        force_non_removable=flag(variables, "FORCE_NON_REMOVABLE"),
        options=options_from_string(variables.get("FLASH_OPTIONS", "")),
        plugin_manager=plugin_manager)
    print(report.summary())
    return report

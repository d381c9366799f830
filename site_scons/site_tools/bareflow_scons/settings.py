"""The variables an image was built with, remembered beside it for `scons run` and `scons flash`.

SCons keeps no settings between invocations, so `scons image MODEL=m.gguf` followed by a bare
`scons flash DEVICE=…` would rebuild BUILD_DIR/bareflow.img with the defaults and flash that
instead of the user's image.  Every image build writes the image variables typed on the command
line to BUILD_DIR/image-settings.json (a build output of its own); a `run` or `flash` that names no
image variable of its own (only the boot and flash ones below) builds with those, and says so
in one line.  Naming any image variable means "build this one": nothing is reused then.
(SCons's own Variables(file).Save() pattern would reuse settings for every target, `scons image`
included, which silently changes what a bare `scons image` builds.)
"""
import json
import os

import SCons.Script as S

SETTINGS_FILE = "image-settings.json"
COMMANDS = {"run", "flash"}
# Variables that leave the image as it is: where the build goes and how it is run or flashed.
_WHERE = {"BUILD_DIR", "CACHE_DIR", "VERBOSE", "IMAGE"}


def _neutral():
    from bareflow.boot import qemu
    from bareflow.flash import builtin as flash_builtin
    return _WHERE | {var.name for module in (qemu, flash_builtin) for var in module.bareflow_register_variables()}


def settings_path(arguments):
    """Path of the settings file for the BUILD_DIR the command line names (default build/)."""
    directory = arguments.get("BUILD_DIR") or "build"
    if not os.path.isabs(directory):
        directory = os.path.join(S.Dir("#").abspath, directory)
    return os.path.join(directory, SETTINGS_FILE)


def image_variables(arguments):
    """{name: text} of the command-line variables that shape the image."""
    neutral = _neutral()
    return {name: text for name, text in sorted(arguments.items()) if name not in neutral}


def reuse(arguments):
    """The command line's variables, completed with the remembered image variables when this is
    a `run`/`flash` of the build's own image that names no image variable; prints one line then."""
    targets = set(S.COMMAND_LINE_TARGETS)
    path = settings_path(arguments)
    # IMAGE= naming the build's own image (build/bareflow.img, as docs/boot-config.md's edit
    # example does) is still the build's image: without its variables it was rebuilt with the
    # defaults, replacing the user's model.
    own = os.path.join(os.path.dirname(path), "bareflow.img")
    other_image = arguments.get("IMAGE") and \
        os.path.abspath(os.path.join(S.Dir("#").abspath, arguments["IMAGE"])) != own
    if not targets or not targets <= COMMANDS or other_image or image_variables(arguments):
        return arguments
    try:
        with open(path, encoding="utf-8") as handle:
            remembered = json.load(handle)
    except (OSError, ValueError):
        return arguments                      # never built here, or unreadable: build the defaults
    if not isinstance(remembered, dict) or not remembered:
        return arguments
    shown = " ".join(f"{name}={text}" for name, text in remembered.items())
    print(f"bareflow: {'/'.join(sorted(targets))} uses the variables the image in "
          f"{os.path.dirname(path)} was built with: {shown} (name an image variable to build another)")
    return {**{str(k): str(v) for k, v in remembered.items()}, **arguments}


def remember_after_build(env, image, arguments):
    """Declare BUILD_DIR/image-settings.json, made from the variables like any other output (so
    CacheDir and `scons -c` treat it as one) and built before `image` whenever `image` is."""
    text = json.dumps(image_variables(arguments), indent=1, sort_keys=True) + "\n"
    env.Depends(image, env.BfWriteBytes(f"$BF_BUILD/{SETTINGS_FILE}", env.Value(text.encode())))

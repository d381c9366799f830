"""Command line: python -m bareflow.flash [--list] [options] DEVICE [IMAGE]

The same flow `scons flash` runs, for use without SCons.  Exit status 0 on success, 1 when the
flash was refused, declined or failed verification (the message says why).
"""
import argparse
import sys

from bareflow.errors import BareflowError
from bareflow.flash.api import DEFAULT_TARGET, available_targets, flash_image


def _list():
    for name, t in available_targets().items():
        c = t.capabilities
        flags = ", ".join(k for k in ("erase", "verify", "sparse_write", "needs_root") if getattr(c, k))
        print(f"{name}: {t.description}\n  capabilities: {flags or 'none'}\n  accepts: {c.accepts}")
        for opt, help_text in t.options.items():
            print(f"  option {opt}: {help_text}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bareflow.flash")
    p.add_argument("device", nargs="?")
    p.add_argument("image", nargs="?", default="build/bareflow.img")
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--bmap")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force-non-removable", action="store_true")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--list", action="store_true", help="list flash targets and exit")
    a = p.parse_args(argv)
    try:
        if a.list:
            _list()
            return 0
        options = {}
        for item in a.option:
            if "=" not in item:
                raise BareflowError(f"--option {item!r}: expected NAME=VALUE")
            k, v = item.split("=", 1)
            options[k] = v
        report = flash_image(a.image, a.device, a.target, bmap=a.bmap, assume_yes=a.yes,
                             force_non_removable=a.force_non_removable, options=options,
                             quiet=a.quiet)
    except BareflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

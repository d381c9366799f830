"""Build variables: how a plugin declares one, and how a value typed on the command line is read.

Every variable belongs to the plugin that declares it through `bareflow_register_variables`
(docs/hooks.md), the way a pytest plugin declares its options; `scons -h` lists the variables of
the loaded plugins, grouped by plugin, and a blocked plugin's variables are gone.  The kinds have
the semantics of SCons's own variable types (the SCons glue builds BoolVariable, EnumVariable,
ListVariable and PathVariable from them), so `LIBC_INLINE=true` means yes everywhere and
`LIBC_INLINE=maybe` stops the build with a message naming the variable and the allowed values.
SCons has no integer type, so "int" (a whole number in a closed range, `parse_int`) is ours.

Values stay the text the user typed: nothing is substituted or re-spaced (`PROMPT='Tom has $5'`
reaches the image as written); `Variable.convert` turns that text into the typed value.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from SCons.Variables.BoolVariable import FALSE_STRINGS, TRUE_STRINGS

from bareflow.errors import BareflowError

KINDS = ("string", "bool", "enum", "list", "path", "int")
_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")


@dataclass(frozen=True)
class Variable:
    """One build variable.

    name       upper case, e.g. "LIBC_INLINE"
    help       one line for `scons -h`
    default    the text used when the variable is not given
    kind       "string" (any text), "bool" (SCons BoolVariable words: yes/no, true/false, 1/0,
               on/off, y/n, t/f, all/none), "enum" (one of `allowed`), "list" (comma-separated
               names from `allowed`, or all/none, as SCons ListVariable), "path" (a file name;
               with `must_exist`, the file must exist), "int" (a whole number in low..high)
    allowed    the names an enum or list accepts
    low, high  the range an "int" accepts, both ends included
    validator  optional callable(name, text) that raises BareflowError for a bad value; it runs
               after the kind's own check, on the text as typed
    """
    name: str
    help: str
    default: str = ""
    kind: str = "string"
    allowed: tuple = ()
    validator: Optional[Callable[[str, str], Any]] = None
    must_exist: bool = False
    low: Optional[int] = None
    high: Optional[int] = None

    def check_declaration(self, where: str) -> None:
        """BareflowError naming `where` (the plugin) for a malformed declaration."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise BareflowError(f"{where}: variable name {self.name!r} must be upper case "
                                "letters, digits and '_', starting with a letter")
        if self.kind not in KINDS:
            raise BareflowError(f"{where}: variable {self.name}: kind {self.kind!r} is not one of "
                                f"{', '.join(KINDS)}")
        if not isinstance(self.help, str) or not isinstance(self.default, str):
            raise BareflowError(f"{where}: variable {self.name}: help and default must be strings")
        if self.kind in ("enum", "list") and not self.allowed:
            raise BareflowError(f"{where}: variable {self.name}: an {self.kind} needs `allowed` names")
        if self.kind == "int" and not (_whole(self.low) and _whole(self.high) and self.low <= self.high):
            raise BareflowError(f"{where}: variable {self.name}: an int needs whole numbers low <= high, "
                                f"not {self.low!r}..{self.high!r}")
        if self.validator is not None and not callable(self.validator):
            raise BareflowError(f"{where}: variable {self.name}: validator must be callable")

    def convert(self, text: str):
        """The typed value of `text`: bool for "bool", tuple of names for "list", int for "int",
        else the text.

        Raises BareflowError naming the variable, the value and what is allowed.
        """
        if self.kind == "bool":
            value = parse_bool(text, self.name)
        elif self.kind == "enum":
            if text not in self.allowed:
                raise BareflowError(f"{self.name}={text!r}: expected one of {', '.join(self.allowed)}")
            value = text
        elif self.kind == "list":
            value = parse_list(text, self.name, self.allowed)
        elif self.kind == "int":
            value = parse_int(text, self.name, self.low, self.high)
        elif self.kind == "path":
            if text and self.must_exist and not os.path.isfile(text):
                raise BareflowError(f"{self.name}={text!r}: no such file")
            value = text
        else:
            value = text
        if self.validator is not None:
            self.validator(self.name, text)
        return value


def parse_bool(text, name: str) -> bool:
    """SCons BoolVariable's reading of `text` (case-insensitive); BareflowError naming `name`."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_STRINGS:
        return True
    if word in FALSE_STRINGS:
        return False
    raise BareflowError(f"{name}={text!r}: expected a yes/no value: {', '.join(TRUE_STRINGS)} "
                        f"or {', '.join(FALSE_STRINGS)}")


_INTEGER = re.compile(r"[+-]?[0-9]+\Z")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def span(value: int) -> str:
    """`value` as the messages write it: 10^9 for a power of ten from a million up, else digits."""
    text = str(value)
    if value >= 10**6 and text == "1" + "0" * (len(text) - 1):
        return f"10^{len(text) - 1}"
    return text


def parse_int(text, name: str, low: int, high: int, meaning: str = "") -> int:
    """The whole number `text` (ASCII digits, optional sign, blanks around ignored) in low..high.

    Raises BareflowError naming the variable, the value as typed and the range, with `meaning`
    (what the number counts, e.g. "cycles one split point costs") in brackets when given:
    `SPLIT_CYCLES='x': expected an integer in 0..10^9 (cycles ...)`.
    """
    if _whole(text):
        word, value = str(text), text
    else:
        word = str(text).strip()
        value = int(word) if _INTEGER.match(word) else None
    if value is None or not low <= value <= high:
        why = f" ({meaning})" if meaning else ""
        raise BareflowError(f"{name}={text!r}: expected an integer in {span(low)}..{span(high)}{why}")
    return value


def parse_list(text: str, name: str, allowed) -> tuple:
    """SCons ListVariable's reading: comma-separated names from `allowed`, "all" or "none"."""
    word = text.strip()
    if word == "all":
        return tuple(allowed)
    if word in ("none", ""):
        return ()
    names = tuple(item.strip() for item in word.split(","))
    bad = [item for item in names if item not in allowed]
    if bad:
        raise BareflowError(f"{name}={text!r}: {bad[0]!r} is not allowed; expected a comma-separated "
                            f"list of {', '.join(allowed)} (or all, none)")
    return names


def flag(variables: Mapping[str, str], name: str, default: str = "no") -> bool:
    """The yes/no variable `name` of a variables mapping, read with SCons's bool semantics;
    absent or empty means `default`."""
    text = variables.get(name)
    return parse_bool(default if text is None or text == "" else text, name)


def unknown_variables(given, known) -> None:
    """Refuse command-line variables no loaded plugin declares (a typo would otherwise be ignored)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        name = unknown[0]
        close = [k for k in known if k == name.upper()] or difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise BareflowError(f"{name} is not a build variable of any loaded plugin; {hint}"
                            "`scons -h` lists them")

"""The tiers and ISA levels every step agrees on: the one definition of both lists.

A tier is an LLVM optimisation level (O0..O3) a layer module is compiled at; its index is the
tier code stored in module files (docs/module-format.md), the policy table and the profile.  An
ISA level is a psABI x86-64 micro-architecture level; its index is the ISA code in module files.
"""
from bareflow.errors import BareflowError

TIERS = ("O0", "O1", "O2", "O3")
# x86-64 psABI micro-architecture levels; the codes are the BFMD `isa` byte and the policy
# table's per-entry level (docs/module-format.md), in order, so a higher code needs more.
ISA_LEVELS = {"x86-64": 0, "x86-64-v2": 1, "x86-64-v3": 2, "x86-64-v4": 3}


def tier_level(tier):
    """The optimisation level (0..3) of `tier`; BareflowError for an unknown tier name."""
    if tier not in TIERS:
        raise BareflowError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}")
    return TIERS.index(tier)


def check_isa(isa):
    """The ISA code of level `isa`; BareflowError naming the known levels otherwise."""
    if isa not in ISA_LEVELS:
        raise BareflowError(f"unknown ISA level {isa!r}; known: {', '.join(ISA_LEVELS)}")
    return ISA_LEVELS[isa]


def parse_isa_list(text, variable="ISA"):
    """`ISA=x86-64,x86-64-v3` -> ["x86-64", "x86-64-v3"]: each level checked, lowest first,
    no repeats.  Raises BareflowError naming the variable and the bad entry."""
    names = [part.strip() for part in str(text).split(",")]
    if not any(names):
        raise BareflowError(f"{variable}={text!r} names no ISA level; known: {', '.join(ISA_LEVELS)}")
    for name in names:
        if name not in ISA_LEVELS:
            raise BareflowError(f"{variable}={text!r}: unknown ISA level {name!r}; known: {', '.join(ISA_LEVELS)}")
    if len(set(names)) != len(names):
        raise BareflowError(f"{variable}={text!r} lists an ISA level twice")
    return sorted(names, key=ISA_LEVELS.get)

"""The tiers and ISA levels every step agrees on: the one definition of both lists.

A tier is an LLVM optimisation level (O0..O3) a layer module is compiled at; its index is the
tier code stored in module files (docs/module-format.md), the policy table and the profile.  An
ISA level is a psABI x86-64 micro-architecture level; its index is the ISA code in module files.
"""
from bareflow.errors import BareflowError

TIERS = ("O0", "O1", "O2", "O3")
ISA_LEVELS = {"x86-64": 0, "x86-64-v3": 1}


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

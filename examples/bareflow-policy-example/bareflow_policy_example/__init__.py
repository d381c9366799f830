"""example-eager: a third-party BareFlow tiering policy, packaged as a plugin.

Every layer starts at O0 and jumps straight to O3 after 10 calls; all tiers are preloaded at
boot so the jump never waits for the disk.  It is deliberately simple: the point is the
packaging (entry point group "bareflow" in pyproject.toml) and the hook it implements.
"""
from bareflow import Decision, Policy, hookimpl

__version__ = "0.1.0"

DEFAULT_CALLS = 10


def _eager(layer, variables):
    # Read an option the way the built-ins do: from the build variables, with a default.
    raw = variables.get("EAGER_CALLS", str(DEFAULT_CALLS))
    try:
        calls = int(raw)
    except ValueError:
        calls = 0
    if calls < 1:
        # BareFlow reports this with the plugin, policy and layer names attached.
        raise ValueError(f"EAGER_CALLS={raw!r} must be a positive integer")
    return Decision(ladder=["O0", "O3"], calls=[calls], cycles=[], preload=True,
                    stop_profiling=False)


EXAMPLE_EAGER = Policy(
    name="example-eager",
    description="Example plugin: every layer O0 -> O3 after 10 calls, tiers preloaded.",
    decide=_eager,
    options={"EAGER_CALLS": "calls at O0 before a layer moves to O3 (default 10)"},
)


@hookimpl
def bareflow_register_policies():
    return [EXAMPLE_EAGER]

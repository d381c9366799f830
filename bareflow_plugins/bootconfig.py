"""/BAREFLOW.CFG: the plain-text boot configuration (docs/boot-config.md).

The build writes it from the PROMPT, STEPS, TEMPERATURE, TOPP, SEED and CORES variables after checking
each value against the same rules the kernel applies, so a bad value fails the build instead of
the boot.
"""
from .errors import BareflowError

DEFAULTS = {"prompt": "Once upon a time", "steps": "32", "temperature": "0", "topp": "0.9", "seed": "42",
            "cores": "all"}
MAX_CORES = 64                  # BF_MAX_CORES in src/runtime/rt.h


def check_cores(text):
    """`cores`: "all" (every core that started) or 1..MAX_CORES; returns the text to write."""
    text = str(text).strip()
    if text == "all":
        return text
    value = _number("cores", text, int, 1, MAX_CORES)
    return str(value)


def _number(name, text, kind, low, high, low_open=False):
    try:
        value = kind(text)
    except ValueError:
        raise BareflowError(f"{name.upper()}={text!r}: not a valid {kind.__name__}") from None
    if value != value or value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise BareflowError(f"{name.upper()}={text!r}: out of range {bound}")
    return value


def check_steps(text, seq_len):
    return _number("steps", str(text), int, 1, seq_len)


def render(values, seq_len):
    """Return the config file bytes for `values` (missing keys take DEFAULTS)."""
    merged = {k: str(values.get(k, "") or v) if k != "prompt" else values.get(k, v) for k, v in DEFAULTS.items()}
    prompt = merged["prompt"]
    if len(prompt.encode("utf-8")) > 255 or any(not (32 <= ord(c) < 127) for c in prompt):
        raise BareflowError("PROMPT must be at most 255 printable ASCII characters")
    steps = _number("steps", merged["steps"], int, 1, seq_len)
    temperature = _number("temperature", merged["temperature"], float, 0.0, 2.0)
    topp = _number("topp", merged["topp"], float, 0.0, 1.0, low_open=True)
    seed = _number("seed", merged["seed"], int, 0, 2**64 - 1)
    cores = check_cores(merged["cores"])
    lines = [
        "# BareFlow boot configuration: edit with any text editor (see docs/boot-config.md).",
        f"prompt = {prompt}",
        f"steps = {steps}",
        f"temperature = {temperature:g}",
        f"topp = {topp:g}",
        f"seed = {seed}",
        f"cores = {cores}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")

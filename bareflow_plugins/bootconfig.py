"""/BAREFLOW.CFG: the plain-text boot configuration (docs/boot-config.md).

The build writes it from the PROMPT, STEPS, TEMPERATURE, TOPP and SEED variables after checking
each value against the same rules the kernel applies, so a bad value fails the build instead of
the boot.
"""
import decimal
import struct

from .errors import BareflowError

DEFAULTS = {"prompt": "Once upon a time", "steps": "32", "temperature": "0", "topp": "0.9", "seed": "42"}


def _number(name, text, kind, low, high, low_open=False):
    try:
        value = kind(text)
    except ValueError:
        raise BareflowError(f"{name.upper()}={text!r}: not a valid {kind.__name__}") from None
    if value != value or value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise BareflowError(f"{name.upper()}={text!r}: out of range {bound}")
    return value


FLOAT32_MIN_NORMAL = 1.17549435e-38     # FLT_MIN: float32 values below it are denormal or zero


def float32(value):
    """The float32 nearest to `value` (what the kernel computes with)."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _positive_float32(name, text, value, hint):
    """A positive value must stay a normal float32: the kernel divides by the temperature, and a
    denormal (or a value that rounds to 0) would overflow the logits or silently mean greedy."""
    try:
        positive = decimal.Decimal(text.strip()) > 0     # exact: 1e-400 is positive though float() says 0
    except (decimal.InvalidOperation, ValueError):
        positive = value > 0
    if positive and not float32(value) >= FLOAT32_MIN_NORMAL:
        raise BareflowError(f"{name.upper()}={text!r}: below {FLOAT32_MIN_NORMAL:g}, the smallest normal "
                            f"float32{hint}")


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
    _positive_float32("temperature", merged["temperature"], temperature, "; use 0 for greedy sampling")
    _positive_float32("topp", merged["topp"], topp, "")
    seed = _number("seed", merged["seed"], int, 0, 2**64 - 1)
    lines = [
        "# BareFlow boot configuration: edit with any text editor (see docs/boot-config.md).",
        f"prompt = {prompt}",
        f"steps = {steps}",
        f"temperature = {temperature:g}",
        f"topp = {topp:g}",
        f"seed = {seed}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")

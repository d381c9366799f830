"""Built-in plugin: /BAREFLOW.CFG, the plain-text boot configuration (docs/boot-config.md).

It declares the PROMPT, STEPS, TEMPERATURE, TOPP, SEED and CORES variables and writes the file from
them after checking each value against the same rules the kernel applies, so a bad value fails
the build instead of the boot.  The prompt is written exactly as typed; a prompt the file cannot
hold (the kernel trims blanks around a value and reads one line) is refused, not changed.
"""
from bareflow import hookimpl
from bareflow.core.variables import Variable
from bareflow.errors import BareflowError

DEFAULTS = {"prompt": "Once upon a time", "steps": "32", "temperature": "0", "topp": "0.9", "seed": "42",
            "cores": "all"}
MAX_CORES = 64                  # BF_MAX_CORES in src/runtime/rt.h


def _number(name, text, kind, low, high, low_open=False):
    try:
        value = kind(text)
    except ValueError:
        raise BareflowError(f"{name.upper()}={text!r}: not a valid {kind.__name__}") from None
    if value != value or value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise BareflowError(f"{name.upper()}={text!r}: out of range {bound}")
    return value


def _check_prompt(name, prompt):
    if len(prompt.encode("utf-8")) > 255 or any(not (32 <= ord(c) < 127) for c in prompt):
        raise BareflowError(f"{name} must be at most 255 printable ASCII characters")
    if prompt != prompt.strip(" \t"):
        raise BareflowError(f"{name}={prompt!r}: a value cannot start or end with a blank in "
                            "/BAREFLOW.CFG (the kernel trims them); remove them")


def check_cores(text, name="CORES"):
    """`cores`: "all" (every core that started) or 1..MAX_CORES; returns the text to write."""
    text = str(text).strip()
    if text == "all":
        return text
    return str(_number(name.lower(), text, int, 1, MAX_CORES))


def _checker(kind, low, high, low_open=False):
    return lambda name, text: _number(name, text, kind, low, high, low_open)


@hookimpl
def bareflow_register_variables():
    return [
        Variable("PROMPT", "prompt written to /BAREFLOW.CFG", DEFAULTS["prompt"], validator=_check_prompt),
        Variable("STEPS", "positions to run, prompt included", DEFAULTS["steps"],
                 validator=_checker(int, 1, 2**31 - 1)),
        Variable("TEMPERATURE", "sampling temperature, 0 = greedy", DEFAULTS["temperature"],
                 validator=_checker(float, 0.0, 2.0)),
        Variable("TOPP", "top-p nucleus mass", DEFAULTS["topp"], validator=_checker(float, 0.0, 1.0, True)),
        Variable("SEED", "sampling seed", DEFAULTS["seed"], validator=_checker(int, 0, 2**64 - 1)),
        Variable("CORES", "cores the run splits layers over (cores= in /BAREFLOW.CFG): all or 1..64",
                 DEFAULTS["cores"], validator=lambda name, text: check_cores(text, name)),
    ]


@hookimpl
def bareflow_image_files(variables, files, products):
    values = {key.lower(): variables[key] for key in ("PROMPT", "STEPS", "TEMPERATURE", "TOPP", "SEED", "CORES")
              if key in variables}
    files["/BAREFLOW.CFG"] = render(values, products["model_config"].seq_len)


def check_steps(text, seq_len):
    return _number("steps", str(text), int, 1, seq_len)


def render(values, seq_len):
    """Return the config file bytes for `values` (missing keys take DEFAULTS)."""
    merged = {k: str(values.get(k, "") or v) if k != "prompt" else values.get(k, v) for k, v in DEFAULTS.items()}
    prompt = merged["prompt"]
    _check_prompt("PROMPT", prompt)
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

"""Built-in plugin: /BAREFLOW.CFG, the plain-text boot configuration (docs/boot-config.md).

It declares the PROMPT, STEPS, TEMPERATURE, TOPP, SEED and CHAT variables and writes the file
from them after checking each value against the same rules the kernel applies, so a bad value
fails the build instead of the boot.  CHAT=1 adds chat_before/chat_after, the text a GGUF
model's chat template puts around one user message (bareflow/model/chat.py).  The prompt is written exactly as typed; a prompt the file cannot
hold (the kernel trims blanks around a value and reads one line) is refused, not changed.
"""
import os

from bareflow import hookimpl
from bareflow.core.variables import Variable
from bareflow.errors import BareflowError

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


MAX_TEXT = 1023          # bytes of prompt, chat_before, chat_after (src/runtime/config.c)


def prompt_bytes(prompt) -> bytes:
    """PROMPT as the UTF-8 bytes the kernel reads; BareflowError when it is not UTF-8 (a command
    line holding other bytes arrives as str with surrogate escapes), too long or has a
    control character."""
    if isinstance(prompt, bytes):
        data = prompt
    else:
        try:
            data = prompt.encode("utf-8")
        except UnicodeEncodeError as e:
            bad = prompt[e.start].encode("utf-8", "surrogateescape")
            raise BareflowError(f"PROMPT is not valid UTF-8: byte 0x{bad[0]:02x} at character {e.start}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BareflowError(f"PROMPT is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from None
    if len(data) > MAX_TEXT:
        raise BareflowError(f"PROMPT is {len(data)} bytes of UTF-8, at most {MAX_TEXT}")
    bad = [c for c in text if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise BareflowError(f"PROMPT holds control character U+{ord(bad[0]):04X}; the prompt is one line of text")
    return data


def escape(text: str) -> str:
    r"""chat_before/chat_after values: \\ \n \r \t escaped, and \s for a space at either end
    (the reader trims unescaped edge spaces)."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    lead = len(out) - len(out.lstrip(" "))
    trail = len(out) - len(out.rstrip(" "))
    if lead == len(out):
        return "\\s" * len(out)
    return "\\s" * lead + out[lead:len(out) - trail] + "\\s" * trail


def _check_prompt(name, prompt):
    prompt_bytes(prompt)
    if prompt != prompt.strip(" \t"):
        raise BareflowError(f"{name}={prompt!r}: a value cannot start or end with a blank in "
                            "/BAREFLOW.CFG (the kernel trims them); remove them")


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
        Variable("CHAT", "1: PROMPT is one user turn of MODEL's chat template (GGUF tokenizer.chat_template)",
                 "0", validator=_check_chat),
    ]


def _check_chat(name, text):
    if text not in ("0", "1", "", "no", "yes"):
        raise BareflowError(f"{name}={text!r}: expected 0 or 1")


def chat_values(variables) -> dict:
    """{"chat_before": ..., "chat_after": ...} for CHAT=1, else {}; BareflowError naming MODEL
    when it is not a GGUF file with a chat template."""
    if variables.get("CHAT", "0") not in ("1", "yes"):
        return {}
    model = variables.get("MODEL", "")
    is_gguf = False
    if model and os.path.isfile(model):
        with open(model, "rb") as fh:
            is_gguf = fh.read(4) == b"GGUF"
    if not is_gguf:
        raise BareflowError("CHAT=1 needs MODEL=<a GGUF file with tokenizer.chat_template>"
                            + (f" ({model} is not GGUF)" if model else ""))
    from bareflow.model import chat
    before, after = chat.from_gguf(model)
    return {"chat_before": before, "chat_after": after}


@hookimpl
def bareflow_image_files(variables, files, products):
    values = {key.lower(): variables[key] for key in ("PROMPT", "STEPS", "TEMPERATURE", "TOPP", "SEED")
              if key in variables}
    values.update(chat_values(variables))
    files["/BAREFLOW.CFG"] = render(values, products["model_config"].seq_len)


def check_steps(text, seq_len):
    return _number("steps", str(text), int, 1, seq_len)


def render(values, seq_len):
    """Return the config file bytes for `values` (missing keys take DEFAULTS; chat_before and
    chat_after, the chat wrapping, are written only when given)."""
    merged = {k: str(values.get(k, "") or v) if k != "prompt" else values.get(k, v) for k, v in DEFAULTS.items()}
    prompt = merged["prompt"]
    _check_prompt("PROMPT", prompt)
    steps = _number("steps", merged["steps"], int, 1, seq_len)
    temperature = _number("temperature", merged["temperature"], float, 0.0, 2.0)
    topp = _number("topp", merged["topp"], float, 0.0, 1.0, low_open=True)
    seed = _number("seed", merged["seed"], int, 0, 2**64 - 1)
    lines = [
        "# BareFlow boot configuration: edit with any text editor (see docs/boot-config.md).",
        f"prompt = {prompt}",
        f"steps = {steps}",
        f"temperature = {temperature:g}",
        f"topp = {topp:g}",
        f"seed = {seed}",
    ]
    for key in ("chat_before", "chat_after"):
        if values.get(key):
            text = values[key]
            if len(text.encode("utf-8")) > MAX_TEXT or any(ord(c) < 32 and c not in "\n\r\t" for c in text):
                raise BareflowError(f"chat template text for {key} is over {MAX_TEXT} bytes or holds control "
                                    "characters other than line ends and tabs")
            lines.append(f"{key} = {escape(text)}")
    return ("\n".join(lines) + "\n").encode("utf-8")

"""Built-in plugin: /BAREFLOW.CFG, the plain-text boot configuration (docs/boot-config.md).

It declares the PROMPT, STEPS, TEMPERATURE, TOPP, SEED and CHAT variables and writes the file
from them after checking each value against the same rules the kernel applies, so a bad value
fails the build instead of the boot.  CHAT=1 adds chat_before/chat_after, the text a GGUF
model's chat template puts around one user message (bareflow/model/chat.py).  The prompt is written exactly as typed; a prompt the file cannot
hold (the kernel trims blanks around a value and reads one line) is refused, not changed.
"""
import decimal
import os
import struct

from bareflow import hookimpl
from bareflow.core.variables import Variable, flag, parse_int
from bareflow.errors import BareflowError

DEFAULTS = {"prompt": "Once upon a time", "steps": "32", "temperature": "0", "topp": "0.9", "seed": "42",
            "cores": "all"}
MAX_CORES = 64                  # BF_MAX_CORES in src/runtime/rt.h


def _number(name, text, kind, low, high, low_open=False):
    if kind is int:
        return parse_int(text, name.upper(), low + 1 if low_open else low, high)
    try:
        value = kind(text)
    except ValueError:
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise BareflowError(f"{name.upper()}={text!r}: not a decimal number; expected one in {bound}, "
                            f"e.g. 0.8") from None
    if value != value or value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise BareflowError(f"{name.upper()}={text!r}: out of range {bound}")
    return value


MAX_TEXT = 1023          # bytes of prompt, chat_before, chat_after (src/runtime/config.c)


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


def _float32_text(value):
    """The shortest %g text (at most 9 significant digits) that the kernel's reader turns into
    the same float32 as `value`: 0.8 stays "0.8", FLT_MIN does not become a denormal."""
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if float32(_kernel_decimal(text)) == float32(value):
            return text
    return f"{value:.9g}"


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


def check_cores(text, name="CORES"):
    """`cores`: "all" (every core that started) or 1..MAX_CORES; returns the text to write."""
    text = str(text).strip()
    if text == "all":
        return text
    try:
        return str(_number(name.lower(), text, int, 1, MAX_CORES))
    except BareflowError:
        raise BareflowError(f"{name}={text!r}: expected all (every core that starts) or an integer "
                            f"in 1..{MAX_CORES}") from None


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
        Variable("CORES", "cores the run splits layers over (/BAREFLOW.CFG cores=): all or 1..64",
                 DEFAULTS["cores"], validator=lambda name, text: check_cores(text, name)),
        Variable("CHAT", "PROMPT is one user turn of MODEL's chat template (GGUF tokenizer.chat_template)",
                 "no", kind="bool"),
    ]


def chat_values(variables) -> dict:
    """{"chat_before": ..., "chat_after": ...} for CHAT=1, else {}; BareflowError naming MODEL
    when it is not a GGUF file with a chat template."""
    if not flag(variables, "CHAT"):
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
    values = {key.lower(): variables[key] for key in ("PROMPT", "STEPS", "TEMPERATURE", "TOPP", "SEED", "CORES")
              if key in variables}
    values.update(chat_values(variables))
    if str(variables.get("JIT", "none")).strip() == "llvm":   # JIT_TIMEOUT_MS: bareflow.kernel.jit
        values["jit_timeout_ms"] = variables.get("JIT_TIMEOUT_MS", str(JIT_TIMEOUT_MS_DEFAULT))
    files["/BAREFLOW.CFG"] = render(values, products["model_config"].seq_len)


def check_steps(text, seq_len):
    """STEPS as an int in 1..seq_len, the model's sequence length (positions one run holds)."""
    return parse_int(str(text), "STEPS", 1, seq_len,
                     f"positions, the prompt's included; {seq_len} is the model's sequence length, seq_len, "
                     f"or SEQ_LEN when that is lower")


def render(values, seq_len):
    """Return the config file bytes for `values` (missing keys take DEFAULTS; chat_before and
    chat_after, the chat wrapping, and jit_timeout_ms (JIT=llvm images) are written only when
    given)."""
    merged = {k: str(values.get(k, "") or v) if k != "prompt" else values.get(k, v) for k, v in DEFAULTS.items()}
    prompt = merged["prompt"]
    _check_prompt("PROMPT", prompt)
    steps = check_steps(merged["steps"], seq_len)
    temperature = _number("temperature", merged["temperature"], float, 0.0, 2.0)
    topp = _number("topp", merged["topp"], float, 0.0, 1.0, low_open=True)
    _positive_float32("temperature", merged["temperature"], temperature, "; use 0 for greedy sampling")
    _positive_float32("topp", merged["topp"], topp, "")
    seed = _number("seed", merged["seed"], int, 0, 2**64 - 1)
    cores = check_cores(merged["cores"])
    lines = [
        "# BareFlow boot configuration: edit with any text editor (see docs/boot-config.md).",
        f"prompt = {prompt}",
        f"steps = {steps}",
        f"temperature = {_float32_text(temperature)}",
        f"topp = {_float32_text(topp)}",
        f"seed = {seed}",
        f"cores = {cores}",
    ]
    if values.get("jit_timeout_ms"):
        lines.append(f"jit_timeout_ms = {_number('jit_timeout_ms', str(values['jit_timeout_ms']), int, *JIT_TIMEOUT_MS)}")
    for key in ("chat_before", "chat_after"):
        if values.get(key):
            text = values[key]
            if len(text.encode("utf-8")) > MAX_TEXT or any(ord(c) < 32 and c not in "\n\r\t" for c in text):
                raise BareflowError(f"chat template text for {key} is over {MAX_TEXT} bytes or holds control "
                                    "characters other than line ends and tabs")
            lines.append(f"{key} = {escape(text)}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    parse(data, seq_len)        # what the build writes, the kernel's rules accept
    return data


# ---- reading a /BAREFLOW.CFG as the kernel does (src/runtime/config.c), rule for rule

CFG_MAX = 8192
_KEYS = ("prompt", "steps", "temperature", "topp", "seed", "cores", "smp_test", "chat_before", "chat_after",
         "jit_cpu", "jit_heap_kib", "jit_timeout_ms")
JIT_CPU_MAX = 63                     # config.c: sizeof rc->jit_cpu - 1
JIT_TIMEOUT_MS = (1, 3600000)        # config.c K_JIT_TIMEOUT_MS range
JIT_TIMEOUT_MS_DEFAULT = 60000       # config.c JIT_TIMEOUT_MS_DEFAULT (when the file has no key)
JIT_HEAP_KIB = (64, 4194304)         # config.c K_JIT_HEAP_KIB range; default 65536 (docs/boot-config.md)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "s": " ", "\\": "\\"}


def _unescape(value, number, key, fail):
    """config.c unescape: \\n \\r \\t \\s \\\\ escapes, at most MAX_TEXT bytes after unescaping."""
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            nxt = value[i + 1] if i + 1 < len(value) else "0"
            if nxt not in _ESCAPES:
                fail(number, f"{key} has an unknown escape '\\{nxt}' (known: \\n \\r \\t \\s \\\\)")
            c, i = _ESCAPES[nxt], i + 1
        out.append(c)
        i += 1
    text = "".join(out)
    if len(text.encode("utf-8")) > MAX_TEXT:
        fail(number, f"{key} is longer than {MAX_TEXT} bytes")
    return text
SMP_TESTS = ("none", "phantom-cpu", "corrupt-madt", "ap-stack-overflow")      # config.c K_SMP_TEST


def _kernel_u64(text):
    """config.c parse_u64: ASCII digits only, no sign or spaces, at most 2^64-1; else None."""
    if not text or any(c not in "0123456789" for c in text):
        return None
    value = int(text)
    return value if value < 2**64 else None


def _kernel_decimal(text):
    """config.c parse_decimal, with its double arithmetic: [+-]digits[.digits][(e|E)[+-]digits],
    at most 18 mantissa digits, the exponent read while it stays <= 99 before each digit."""
    s, i, neg = text, 0, False
    if s[:1] in ("-", "+"):
        neg, i = s[0] == "-", 1
    mant = digits = frac = 0
    dot = False
    while i < len(s) and s[i] not in "eE":
        if s[i] == "." and not dot:
            dot = True
        elif s[i] in "0123456789" and digits < 18:
            digits += 1
            mant = mant * 10 + int(s[i])
            frac += dot
        else:
            return None
        i += 1
    if not digits:
        return None
    exp, eneg = 0, False
    if i < len(s):
        i += 1
        if s[i:i + 1] in ("-", "+"):
            eneg, i = s[i] == "-", i + 1
        if i >= len(s):
            return None
        for c in s[i:]:
            if c not in "0123456789" or exp > 99:
                return None
            exp = exp * 10 + int(c)
    scale10 = (-exp if eneg else exp) - frac
    scale, value = 1.0, -float(mant) if neg else float(mant)
    for _ in range(abs(scale10)):
        scale *= 10.0
    return value / scale if scale10 < 0 else value * scale


def parse(data, seq_len=None):
    """Check /BAREFLOW.CFG bytes exactly as the kernel does and return {key: value} with the
    defaults filled in (temperature and topp as the float32 the kernel holds).  `steps` is
    checked against `seq_len` when it is given.  Raises BareflowError naming BAREFLOW.CFG, the
    line and the key, for every file the kernel refuses and no other."""
    def fail(line, problem):
        raise BareflowError(f"BAREFLOW.CFG line {line}: {problem}" if line else f"BAREFLOW.CFG: {problem}")

    if len(data) > CFG_MAX:
        fail(0, f"{len(data)} bytes, at most {CFG_MAX}")
    values = dict(prompt="Once upon a time", steps=32, temperature=0.0, topp=float32(0.9), seed=42, cores=0,
                  smp_test="none", chat_before="", chat_after="", jit_cpu="", jit_heap_kib=65536,
                  jit_timeout_ms=JIT_TIMEOUT_MS_DEFAULT)
    data = bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(data.count(b"\n", 0, exc.start) + 1,
             f"byte 0x{data[exc.start]:02x} is not valid UTF-8 (the file must be UTF-8 text)")
    seen = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        for k, byte in enumerate(raw):
            crlf = byte == 0x0D and k + 1 == len(raw) and number <= data.count(b"\n")
            if (byte < 0x20 or byte == 0x7F) and byte != 0x09 and not crlf:
                fail(number, f"control byte 0x{byte:02x} (only text, tabs and line ends)")
        line = raw.decode("utf-8")
        if line.endswith("\r"):
            line = line[:-1]
        line = line.strip(" \t")
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            fail(number, f"expected 'key = value', got {line[:60]!r}")
        key, value = line.split("=", 1)
        key, value = key.rstrip(" \t"), value.lstrip(" \t")
        if key not in _KEYS:
            fail(number, f"unknown key {key[:40]!r} (known: {', '.join(_KEYS)})")
        if key in seen:
            fail(number, f"key {key!r} repeated (first set on line {seen[key]})")
        seen[key] = number
        if key == "prompt":
            if len(value.encode("utf-8")) > MAX_TEXT:
                fail(number, f"prompt is {len(value.encode('utf-8'))} bytes, at most {MAX_TEXT}")
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                fail(number, "prompt holds a control byte")
            values[key] = value
        elif key in ("chat_before", "chat_after"):
            values[key] = _unescape(value, number, key, fail)
        elif key == "cores":
            n = None if value == "all" else _kernel_u64(value)
            if value != "all" and (n is None or not 1 <= n <= MAX_CORES):
                fail(number, f"cores = {value!r} is neither 'all' nor an integer in 1..{MAX_CORES}")
            values[key] = 0 if value == "all" else n
        elif key == "jit_cpu":
            if not 1 <= len(value.encode("utf-8")) <= JIT_CPU_MAX:
                fail(number, f"jit_cpu is {len(value.encode('utf-8'))} bytes, expected 1..{JIT_CPU_MAX}")
            if any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-_." for c in value):
                fail(number, f"jit_cpu {value!r} is not a CPU name of [a-z0-9._-]")
            values[key] = value
        elif key == "jit_heap_kib":
            n = _kernel_u64(value)
            if n is None or not JIT_HEAP_KIB[0] <= n <= JIT_HEAP_KIB[1]:
                fail(number, f"jit_heap_kib = {value!r} is not an integer in {JIT_HEAP_KIB[0]}..{JIT_HEAP_KIB[1]}")
            values[key] = n
        elif key == "jit_timeout_ms":
            n = _kernel_u64(value)
            if n is None or not JIT_TIMEOUT_MS[0] <= n <= JIT_TIMEOUT_MS[1]:
                fail(number, f"jit_timeout_ms = {value!r} is not an integer in "
                             f"{JIT_TIMEOUT_MS[0]}..{JIT_TIMEOUT_MS[1]}")
            values[key] = n
        elif key == "smp_test":
            if value not in SMP_TESTS:
                fail(number, f"smp_test = {value!r} is not {', '.join(SMP_TESTS)}")
            values[key] = value
        elif key in ("steps", "seed"):
            n = _kernel_u64(value)
            if n is None or (key == "steps" and not 1 <= n <= 10**9):
                fail(number, f"{key} = {value!r} is not an integer in range")
            values[key] = n
        else:
            d = _kernel_decimal(value)
            if d is None:
                fail(number, f"{key} = {value!r} is not a decimal number")
            ok = 0.0 <= d <= 2.0 if key == "temperature" else 0.0 < d <= 1.0
            if not ok:
                fail(number, f"{key} = {value} out of range")
            if (key == "topp" or d > 0.0) and not float32(d) >= FLOAT32_MIN_NORMAL:
                fail(number, f"{key} = {value} is below the smallest normal float32")
            values[key] = float32(d)
    if seq_len is not None and values["steps"] > seq_len:
        fail(seen.get("steps", 0), f"steps = {values['steps']} exceeds the model's seq_len {seq_len}")
    return values

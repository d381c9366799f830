"""Chat templates: the text a model's template puts before and after one user message.

`CHAT=1` makes PROMPT one user turn.  The build renders the GGUF's `tokenizer.chat_template`
(Jinja, the language Hugging Face chat templates are written in; rendered with jinja2's
sandbox the way `transformers` renders them: trim_blocks, lstrip_blocks, `raise_exception`)
for a conversation of one user message whose content is a marker, with the generation prompt
added, and splits the result at the marker.  The two halves go to /BAREFLOW.CFG as
`chat_before` and `chat_after` (docs/boot-config.md), so the kernel wraps whatever prompt the
config holds, including one edited on a flashed stick.

This covers templates whose output for one user message is "fixed text + message + fixed text":
chatml (SmolLM2, Qwen), zephyr (TinyLlama-Chat), llama-2 `[INST]`, llama-3, phi-3, gemma, and the
like.  A template that transforms the message (strip(), upper-casing, ...) or drops it is
refused: the marker would not come back exactly once.
"""
from __future__ import annotations

from ..errors import BareflowError

MARKER = "\x00bareflow user message\x00"      # lower case and spaces: upper or strip would show


def split_template(template: str, *, bos_token: str = "", eos_token: str = "", path: str = "<template>"):
    """(before, after) for one user turn with the generation prompt; str, UTF-8 text.
    Raises BareflowError naming `path` when the template cannot be rendered or transforms
    the message."""
    import jinja2
    import jinja2.sandbox

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        text = env.from_string(template).render(
            messages=[{"role": "user", "content": MARKER}], add_generation_prompt=True,
            bos_token=bos_token, eos_token=eos_token)
    except jinja2.exceptions.TemplateError as e:
        raise BareflowError(f"{path}: tokenizer.chat_template cannot be rendered for one user message "
                            f"({type(e).__name__}: {e})") from None
    if text.count(MARKER) != 1:
        raise BareflowError(f"{path}: tokenizer.chat_template does not place the user message verbatim exactly "
                            "once; CHAT=1 covers templates of the form 'text + message + text'")
    before, after = text.split(MARKER)
    return before, after


def from_gguf(path_or_reader):
    """(before, after) from a GGUF file's tokenizer.chat_template, with its bos/eos token texts.
    A leading BOS text is dropped when the tokenizer adds BOS itself (no double BOS).
    Raises BareflowError when the file has no chat template."""
    from . import tokenizer_v2
    reader, path = tokenizer_v2._reader(path_or_reader)
    if "tokenizer.chat_template" not in reader.fields:
        raise BareflowError(f"GGUF {path}: CHAT=1 needs tokenizer.chat_template, which this model does not have")
    template = reader.fields["tokenizer.chat_template"].contents()
    vocab = tokenizer_v2.from_gguf(reader)

    def text(i):
        return vocab.pieces[i].decode("utf-8", errors="replace") if i >= 0 else ""
    bos, eos = text(vocab.bos), text(vocab.eos)
    before, after = split_template(template, bos_token=bos, eos_token=eos, path=str(path))
    if vocab.add_bos and bos and before.startswith(bos):
        before = before[len(bos):]
    return before, after

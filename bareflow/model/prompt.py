"""The prompt as the kernel will tokenize it, checked against STEPS before anything is built.

The kernel (src/runtime/inference.c, bf_generate) tokenizes chat_before + PROMPT + chat_after
and runs STEPS positions: positions 0..n-2 feed the prompt's tokens, and each position from
n-1 on samples one new token.  So a run generates at most STEPS - n + 1 tokens, and a STEPS
below the prompt's n tokens generates none while still reporting success.  The build counts n
with tokenizer_v2 (tested token for token against the kernel's tokenizer) and refuses that.
"""
from __future__ import annotations

from bareflow.errors import BareflowError


def prompt_ids(variables, vocab, chat=None) -> list:
    """Token ids the kernel starts from for PROMPT, wrapped in `chat` (bootconfig.chat_values(),
    computed here when None: MODEL's chat template when CHAT=1).  Raises BareflowError for a
    prompt that is not valid UTF-8 or a CHAT=1 the model cannot serve."""
    from bareflow.image import bootconfig
    if chat is None:
        chat = bootconfig.chat_values(variables)
    text = bootconfig.prompt_bytes(variables["PROMPT"])
    if chat:
        text = chat["chat_before"].encode("utf-8") + text + chat["chat_after"].encode("utf-8")
    return vocab.tokenize(text)


def check(variables, vocab, seq_len: int) -> int:
    """Refuse a prompt the run cannot start from or generate after; returns its token count.

    seq_len: the model's sequence length (positions).  BareflowError: no token to start from,
    more tokens than the kernel's BF_MAX_PROMPT_TOKENS, more than seq_len, or STEPS (checked to
    be in 1..seq_len first) too small to leave a position for a generated token."""
    from bareflow.image import bootconfig
    from . import tokenizer_v2
    chat = bootconfig.chat_values(variables)
    ids = prompt_ids(variables, vocab, chat)
    n = len(ids)
    what = f"PROMPT is {n} tokens" + (" (after the chat template)" if chat else "")
    if not ids:
        raise BareflowError("PROMPT is empty and the tokenizer adds no BOS: the kernel would have no token to "
                            "start from")
    if n > tokenizer_v2.MAX_PROMPT_TOKENS:
        raise BareflowError(f"{what}, more than the kernel's {tokenizer_v2.MAX_PROMPT_TOKENS}")
    if n > seq_len:
        raise BareflowError(f"{what}, more than the model's sequence length {seq_len} (seq_len): shorten PROMPT")
    steps_text = variables.get("STEPS", bootconfig.DEFAULTS["steps"])
    steps = bootconfig.check_steps(steps_text, seq_len)
    if steps < n:
        raise BareflowError(f"{what}; STEPS={steps_text} leaves none to generate: set STEPS above {n - 1} "
                            "(STEPS counts positions, the prompt's included)")
    return n

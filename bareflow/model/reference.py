"""Numpy reference for the kernel: float32 forward pass, xorshift RNG, sampler, generate loop.

Written for clarity, not speed: every step mirrors one layer of layer_abi.h so a disagreement
with the kernel points at a layer.  Matrix products use numpy's (BLAS) summation order, so
logits match the kernel only to float32 rounding noise; tokens match when the top-1/top-2
margin is well above that noise (generate() reports the margins).  The RNG and the sampler's
scalar arithmetic are emulated exactly (64-bit ints, float32 scalars).

    python -m bareflow.model.reference --model M --tokenizer T --prompt P --steps N
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bareflow.errors import BareflowError
from bareflow.model.checkpoint import read_checkpoint
from bareflow.model.tokenizer import BOS_ID, Tokenizer, read_tokenizer

F32 = np.float32
RMS_EPS = F32(1e-5)
ROPE_THETA = F32(10000.0)
MASK64 = (1 << 64) - 1
DEFAULT_SEED = 0x853C49E6748FEA9B


class XorShiftRng:
    """The kernel's sampling RNG (xorshift64* with a 32-bit output)."""

    def __init__(self, seed: int):
        if not 0 <= seed <= MASK64:
            raise BareflowError(f"seed={seed} is outside 0..2^64-1")
        self.state = seed if seed != 0 else DEFAULT_SEED

    def next_u32(self) -> int:
        s = self.state
        s ^= s >> 12
        s = (s ^ (s << 25)) & MASK64
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & MASK64) >> 32

    def coin(self) -> float:
        # 24 random bits / 2^24 is exact in float32: the kernel gets the very same value
        return float(F32(self.next_u32() >> 8) / F32(16777216.0))


def rmsnorm(x, weight, eps=RMS_EPS):
    ss = F32(np.dot(x, x)) / F32(x.shape[0]) + F32(eps)
    return (weight * (x * (F32(1.0) / np.sqrt(ss)))).astype(F32)


def softmax(x):
    e = np.exp(x - x.max()).astype(F32)
    return (e / np.add.accumulate(e)[-1]).astype(F32)


def rope_tables(head_size: int, theta=ROPE_THETA, rope_dim: int | None = None):
    """freq for each even index i inside a head: 1 / theta^(i / rope_dim), in float32; 0 (no
    rotation) for i >= rope_dim (default rope_dim: the whole head)."""
    rope_dim = rope_dim or head_size
    i = np.arange(0, head_size, 2, dtype=F32)
    freqs = F32(1.0) / np.power(F32(theta), i / F32(rope_dim))
    return np.where(i < rope_dim, freqs, F32(0.0)).astype(F32)


def rope(vec, pos: int, head_size: int, freqs):
    """Rotate pairs (2i, 2i+1) of every head of `vec` by pos * freq_i."""
    v = vec.reshape(-1, head_size // 2, 2)
    angle = F32(pos) * freqs
    c, s = np.cos(angle).astype(F32), np.sin(angle).astype(F32)
    v0, v1 = v[..., 0].copy(), v[..., 1].copy()
    v[..., 0] = v0 * c - v1 * s
    v[..., 1] = v0 * s + v1 * c
    return v.reshape(vec.shape)


class Transformer:
    """Holds the weights and the key/value cache; forward(token, pos) returns the logits."""

    def __init__(self, checkpoint):
        if isinstance(checkpoint, tuple):
            self.config, self.w = checkpoint
        else:
            self.config, self.w = read_checkpoint(checkpoint)
        c = self.config
        self.key_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), F32)
        self.value_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), F32)
        # GGUF configs (weightsfile.WeightsConfig) carry their own RoPE base, width and epsilon.
        self.freqs = rope_tables(c.head_size, getattr(c, "rope_theta", ROPE_THETA), getattr(c, "rope_dim", None))
        self.eps = F32(getattr(c, "rms_eps", RMS_EPS))
        # ablate: layer names whose contribution is skipped (tests use it to show each matters)
        self.ablate = set()

    def forward(self, token: int, pos: int):
        c, w = self.config, self.w
        if not 0 <= token < c.vocab_size:
            raise BareflowError(f"forward: token {token} outside 0..{c.vocab_size - 1}")
        if not 0 <= pos < c.seq_len:
            raise BareflowError(f"forward: position {pos} outside 0..{c.seq_len - 1}")
        hs, group = c.head_size, c.n_heads // c.n_kv_heads
        x = np.array(w.token_embedding_table[token], dtype=F32)           # embed
        for b in range(c.n_layers):
            xb = rmsnorm(x, w.rms_att_weight[b], self.eps)                 # rmsnorm
            q = (w.wq[b] @ xb).astype(F32)                                 # qkv
            k = (w.wk[b] @ xb).astype(F32)
            v = (w.wv[b] @ xb).astype(F32)
            if "rope" not in self.ablate:                                  # rope
                q = rope(q, pos, hs, self.freqs)
                k = rope(k, pos, hs, self.freqs)
            self.key_cache[b, pos] = k
            self.value_cache[b, pos] = v
            keys = self.key_cache[b, :pos + 1].reshape(pos + 1, c.n_kv_heads, hs)
            vals = self.value_cache[b, :pos + 1].reshape(pos + 1, c.n_kv_heads, hs)
            out = np.empty(c.n_heads * hs, F32)                            # attn
            for h in range(c.n_heads):
                kvh = h // group
                scores = (keys[:, kvh, :] @ q[h * hs:(h + 1) * hs]) / np.sqrt(F32(hs))
                att = softmax(scores.astype(F32))
                out[h * hs:(h + 1) * hs] = att @ vals[:, kvh, :]
            if "attn" not in self.ablate:                                  # attnout
                x = (x + (w.wo[b] @ out).astype(F32)).astype(F32)
            xb = rmsnorm(x, w.rms_ffn_weight[b], self.eps)                 # rmsnorm
            h1 = (w.w1[b] @ xb).astype(F32)                                # ffn
            h3 = (w.w3[b] @ xb).astype(F32)
            hb = (h1 * (F32(1.0) / (F32(1.0) + np.exp(-h1))) * h3).astype(F32)
            if "ffn" not in self.ablate:
                x = (x + (w.w2[b] @ hb).astype(F32)).astype(F32)
        x = rmsnorm(x, w.rms_final_weight, self.eps)                       # rmsnorm
        return (w.wcls @ x).astype(F32)                                    # classify


def sample_argmax(logits) -> int:
    return int(np.argmax(logits))      # numpy returns the first (lowest) index on ties


def sample_topp(logits, temperature: float, topp: float, coin: float) -> int:
    """logits / temperature -> softmax -> llama2.c's sampler: plain multinomial sampling when
    topp >= 1 (a nucleus holding all the mass is the whole distribution), nucleus otherwise."""
    top = int(np.argmax(logits))
    with np.errstate(over="ignore"):
        if not np.isfinite(logits[top] / F32(temperature)):
            return top      # the kernel's sampler: a tiny temperature's limit is the argmax
        probs = softmax((logits / F32(temperature)).astype(F32))
    if F32(topp) >= F32(1.0) or probs.shape[0] < 2:
        return sample_multinomial(probs, coin)
    return sample_topp_probs(probs, topp, coin)


def sample_multinomial(probs, coin: float) -> int:
    """The first index whose running float32 sum exceeds coin (the last one if rounding leaves
    the total below coin), as llama2.c's sample_mult."""
    cdf = np.add.accumulate(probs.astype(F32), dtype=F32)
    hit = np.nonzero(F32(coin) < cdf)[0]
    return int(hit[0]) if hit.size else probs.shape[0] - 1


def sample_topp_probs(probs, topp: float, coin: float) -> int:
    """llama2.c's sample_topp on float32 probabilities, float32 scalars in llama2.c's order."""
    n = probs.shape[0]
    topp = F32(topp)
    # candidates below the cutoff cannot be in the nucleus; dropping them only saves sorting
    cutoff = (F32(1.0) - topp) / F32(n - 1) if n > 1 else F32(0.0)
    idx = np.nonzero(probs >= cutoff)[0]
    p = probs[idx]
    order = np.lexsort((idx, -p))      # descending probability, lower index first on ties
    idx, p = idx[order], p[order]
    cum = np.add.accumulate(p, dtype=F32)   # sequential float32 sums, like the C loop
    over = np.nonzero(cum > topp)[0]
    last = int(over[0]) if over.size else len(p) - 1
    r = F32(coin) * cum[last]
    hit = np.nonzero(r < cum[:last + 1])[0]
    return int(idx[hit[0]]) if hit.size else int(idx[last])


def _top2(logits):
    top = np.argsort(-logits, kind="stable")[:2]
    return float(logits[top[0]]), float(logits[top[1]])


def generate(checkpoint, tokenizer, prompt: str, steps: int, temperature: float = 0.0,
             topp: float = 0.9, seed: int = 42, prompt_tokens=None, stop_ids=None) -> dict:
    """llama2.c's generate loop.  `steps` counts every position processed, prompt included;
    a sampled BOS stops early.  One coin is drawn at every sampled position, greedy or not.
    prompt_tokens: ids to use instead of encoding `prompt` (tokenizer may then be None, and the
    text is left empty).  stop_ids: sampled ids that end the run (default: BOS, llama2.c's rule)."""
    stop_ids = {BOS_ID} if stop_ids is None else set(stop_ids)
    model = checkpoint if isinstance(checkpoint, Transformer) else Transformer(checkpoint)
    c = model.config
    tok = tokenizer if isinstance(tokenizer, Tokenizer) or tokenizer is None else \
        read_tokenizer(tokenizer, c.vocab_size)
    if tok is not None and tok.vocab_size != c.vocab_size:
        raise BareflowError(f"tokenizer {tok.path}: {tok.vocab_size} tokens but the model "
                            f"has vocab_size={c.vocab_size}")
    if not 1 <= steps <= c.seq_len:
        raise BareflowError(f"steps={steps} is outside 1..seq_len={c.seq_len}")
    if not temperature >= 0:
        raise BareflowError(f"temperature={temperature} must be >= 0")
    if not 0 < topp <= 1:
        raise BareflowError(f"topp={topp} must be in (0, 1]")
    for name, value in (("temperature", temperature), ("topp", topp)):
        if value > 0 and not F32(value) >= np.finfo(np.float32).tiny:
            raise BareflowError(f"{name}={value} is below {np.finfo(np.float32).tiny:g}, the smallest normal "
                                "float32 (the kernel refuses it too)")
    rng = XorShiftRng(seed)
    prompt_tokens = list(prompt_tokens) if prompt_tokens is not None else tok.encode(prompt, bos=True)
    generated, margins, rel_margins, text = [], [], [], []
    token, pos = prompt_tokens[0], 0
    while pos < steps:
        logits = model.forward(token, pos)
        if pos < len(prompt_tokens) - 1:
            nxt = prompt_tokens[pos + 1]
        else:
            coin = rng.coin()
            if float(F32(temperature)) == 0.0:
                nxt = sample_argmax(logits)
            else:
                nxt = sample_topp(logits, temperature, topp, coin)
            a, b = _top2(logits)
            margins.append(a - b)
            rel_margins.append((a - b) / max(float(np.abs(logits).max()), 1e-30))
        pos += 1
        if nxt in stop_ids:
            break
        if pos >= len(prompt_tokens):
            generated.append(nxt)
            text.append(tok.decode(token, nxt) if tok is not None else b"")
        token = nxt
    return {
        "prompt": prompt,
        "prompt_tokens": prompt_tokens,
        "tokens": generated,
        "text": b"".join(text).decode("utf-8", errors="replace"),
        "steps": steps,
        "temperature": temperature,
        "topp": topp,
        "seed": seed,
        "logits_margins": margins,
        "relative_margins": rel_margins,
    }


NEAR_TIE = 1e-4     # a top-2 gap below this share of the largest |logit| is float32 order noise


def check_greedy(model, prompt_tokens, tokens, near_tie: float = NEAR_TIE) -> dict:
    """Replay a greedy run of the kernel through the reference, teacher-forced: the reference
    reads the kernel's own tokens, so every step is compared even after the two parted.

    model: a Transformer (its KV cache is overwritten); prompt_tokens, tokens: the kernel's
    BAREFLOW-RESULT lists.  At each generated step the reference's argmax is compared with the
    kernel's token; where they differ, `gap` is reference logit of its choice minus that of the
    kernel's, and `near_tie` says whether gap <= near_tie x max|logit| (float32 summation-order
    noise: the two orders round differently, and a tie that close can go either way).
    Returns {"steps": n, "agree": k, "disagreements": [{"step", "kernel", "reference", "gap",
    "relative_gap", "near_tie"}]}.  BareflowError (from forward) for ids outside the vocabulary."""
    seq = list(prompt_tokens) + list(tokens)
    if not prompt_tokens or len(seq) > model.config.seq_len:
        raise BareflowError(f"check_greedy: need a prompt and at most seq_len={model.config.seq_len} "
                            f"tokens, got {len(prompt_tokens)} + {len(tokens)}")
    model.key_cache[:] = 0
    model.value_cache[:] = 0
    out = {"steps": len(tokens), "agree": 0, "disagreements": []}
    for pos in range(len(seq) - 1):
        logits = model.forward(seq[pos], pos)
        if pos + 1 < len(prompt_tokens):
            continue
        want, got = sample_argmax(logits), seq[pos + 1]
        if want == got:
            out["agree"] += 1
            continue
        gap = float(logits[want]) - float(logits[got])
        rel = gap / max(float(np.abs(logits).max()), 1e-30)
        out["disagreements"].append({"step": pos + 1 - len(prompt_tokens), "kernel": got, "reference": want,
                                     "gap": gap, "relative_gap": rel, "near_tie": rel <= near_tie})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bareflow.model.reference",
                                 description="Generate text with the numpy reference model.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--topp", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    try:
        result = generate(args.model, args.tokenizer, args.prompt, args.steps,
                          args.temperature, args.topp, args.seed)
    except BareflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

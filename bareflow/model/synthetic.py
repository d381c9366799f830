"""A small, deterministic TinyLlama-shaped model and tokenizer for fast tests under emulation.

Architecture as TinyLlama (RMSNorm, RoPE, grouped-query attention, SwiGLU, separate classifier
so the header's vocab_size is negative) at a size QEMU's TCG runs in seconds.

The weights are built so greedy decoding is *robust*: the kernel's summation order differs from
numpy's, and a test comparing tokens is only meaningful if no step is a near tie.  A "story"
of distinct tokens gets exactly orthogonal embeddings (signed rows of a Hadamard matrix) and the
classifier maps each story token's direction to its successor, so the residual stream after the
last block still points at the next word by a wide logit margin.  The transformer blocks are
random but far from negligible: they move the logits by a sizeable fraction of that margin,
so a broken layer in the kernel changes the numbers (tests/test_models_synthetic.py checks both).

Byte-identical output everywhere: random numbers come from a counter-based SplitMix64 on
numpy uint64 arrays (no Generator whose stream could change between numpy versions), and the
only float operations before the float32 cast are exact or single IEEE roundings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bareflow.model.checkpoint import ModelConfig, Weights, tensor_shapes
from bareflow.model.tokenizer import Tokenizer

# The repeating story.  Every token is distinct, so "next word" is a function of the current
# token alone; the cycle closes ("home!" -> "Once") so every story token has a successor.
STORY = [" Once", " upon", " a", " time", ",", " there", " lived", " an", " old", " fox",
         " named", " Max", ".", " He", " loved", " red", " apples", " and", " sunny", " days",
         ";", " every", " morning", " he", " ran", " to", " the", " big", " river", " near",
         " his", " home", "!"]
# More words (and sub-word pieces) so other prompts also tokenize into merged pieces.
EXTRA_WORDS = [" was", " she", " She", " little", " girl", " play", " with", " The", " cat",
               " dog", " happy", " said", " One", " day"]
SUBWORDS = ["th", "he", "in", "ing", "ed", "er", "an", "nd", "ou", "re", "on"]

SEED = 0xBA4EF111            # picked so every greedy step of the default prompt is far from a tie
EMBED_SCALE = 1.0            # story embeddings are +-1: rms 1, norm sqrt(dim)
CLS_GAIN = 32.0              # logit of the designed successor when the stream is a pure embedding
CLS_NOISE = 0.2              # per-entry rms of the classifier's random part
ATTN_GAIN = 1.0              # rms of wo relative to 1/sqrt(dim): the attention block's weight
FFN_GAIN = 1.25              # same for w2 relative to 1/sqrt(hidden_dim)
QK_GAIN = 2.0                # sharpens attention so RoPE (relative position) matters

CONFIG = ModelConfig(dim=64, hidden_dim=176, n_layers=4, n_heads=8, n_kv_heads=2,
                     vocab_size=0, seq_len=256, shared_classifier=False)  # vocab filled below

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _Stream:
    """Uniform numbers for one named tensor: value i depends only on (seed, name, i)."""

    def __init__(self, seed: int, name: str):
        key = seed
        for ch in name.encode("ascii"):
            key = (key * 1099511628211 + ch) & ((1 << 64) - 1)   # FNV-style name mix
        self.base = _splitmix(np.array([key], dtype=np.uint64))[0]

    def uniform(self, shape, rms):
        """Uniform on [-a, a) with the given rms (a = rms*sqrt(3)), as float32."""
        n = int(np.prod(shape))
        with np.errstate(over="ignore"):
            z = _splitmix(self.base + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN))
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -52 - 1.0     # exact, in [-1, 1)
        return (u * (rms * math.sqrt(3.0))).astype("<f4").reshape(shape)


def _hadamard(n):
    h = np.array([[1]], dtype=np.int64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _prefixes(word):
    """Every prefix of at least two bytes: the merge path the tokenizer climbs to `word`."""
    b = word.encode("ascii")
    return [b[:i] for i in range(2, len(b) + 1)]


def build_tokenizer() -> Tokenizer:
    pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [bytes([c]) for c in range(0x20, 0x7F)]
    merged = []
    for w in STORY + EXTRA_WORDS + SUBWORDS:
        for p in _prefixes(w):
            if p not in merged and p not in pieces:
                merged.append(p)
    # Shorter pieces merge first (higher score), as in a BPE vocabulary learned bottom-up.
    merged.sort(key=lambda p: (len(p), p))
    n_single = len(pieces) - 259
    scores = [0.0] * 259 + [-1000.0 - i for i in range(n_single)]
    pieces += merged
    scores += [float(-i) for i in range(len(merged))]
    return Tokenizer(pieces, scores, max(len(p) for p in pieces), path="<synthetic>")


@dataclass
class Synthetic:
    config: ModelConfig
    tensors: dict            # name -> float32 array, file order
    tokenizer: Tokenizer
    story_ids: list

    def weights(self) -> Weights:
        return Weights(**self.tensors)

    def checkpoint_bytes(self) -> bytes:
        parts = [self.config.header_bytes()]
        for name, shape in tensor_shapes(self.config):
            t = self.tensors[name]
            assert t.shape == shape and t.dtype == np.dtype("<f4"), name
            parts.append(t.tobytes())
        return b"".join(parts)


def build(seed: int = SEED) -> Synthetic:
    tok = build_tokenizer()
    c = ModelConfig(**{**CONFIG.__dict__, "vocab_size": tok.vocab_size})
    d, h, L, V = c.dim, c.hidden_dim, c.n_layers, c.vocab_size
    rnd = lambda name, shape, rms: _Stream(seed, name).uniform(shape, rms)
    story = [tok.lookup(w.encode("ascii")) for w in STORY]
    assert min(story) >= 0 and len(set(story)) == len(story)

    # Story embeddings: distinct Hadamard rows (row 0, all ones, left out) times one random
    # column sign pattern: exactly orthogonal, entries +-1.
    had = _hadamard(d)
    rows = 1 + np.argsort(rnd("story_rows", (d - 1,), 1.0), kind="stable")[:len(story)]
    signs = np.where(rnd("story_signs", (d,), 1.0) < 0, -1, 1)
    dirs = (had[rows] * signs).astype("<f4") * np.float32(EMBED_SCALE)
    emb = rnd("token_embedding_table", (V, d), EMBED_SCALE)
    emb[story] = dirs

    wcls = rnd("wcls", (V, d), CLS_NOISE)
    for i, tid in enumerate(story):
        nxt = story[(i + 1) % len(story)]
        # dirs[i] . dirs[i] = d * EMBED_SCALE^2 and dirs[i] . dirs[j] = 0: a stream equal to
        # dirs[i] gives its successor the logit CLS_GAIN and the other successors nothing
        wcls[nxt] += dirs[i] * np.float32(CLS_GAIN / (d * EMBED_SCALE))

    t = {
        "token_embedding_table": emb,
        "rms_att_weight": 1.0 + rnd("rms_att_weight", (L, d), 0.1),
        "wq": rnd("wq", (L, d, d), QK_GAIN / math.sqrt(d)),
        "wk": rnd("wk", (L, c.kv_dim, d), QK_GAIN / math.sqrt(d)),
        "wv": rnd("wv", (L, c.kv_dim, d), 1.0 / math.sqrt(d)),
        "wo": rnd("wo", (L, d, d), ATTN_GAIN / math.sqrt(d)),
        "rms_ffn_weight": 1.0 + rnd("rms_ffn_weight", (L, d), 0.1),
        "w1": rnd("w1", (L, h, d), 1.0 / math.sqrt(d)),
        "w2": rnd("w2", (L, d, h), FFN_GAIN / math.sqrt(h)),
        "w3": rnd("w3", (L, h, d), 1.0 / math.sqrt(d)),
        "rms_final_weight": 1.0 + rnd("rms_final_weight", (d,), 0.1),
    }
    # The legacy RoPE tables llama2.c's exporter writes (cos/sin of pos * freq); nothing reads
    # them, but they make the file look like a real export.  math.cos is libm's double cos,
    # correctly rounded in practice, so the float32 cast is platform-stable.
    hs = c.head_size
    ang = [[p * (1.0 / 10000.0 ** (2 * i / hs)) for i in range(hs // 2)] for p in range(c.seq_len)]
    t["freq_cis_real"] = np.array([[math.cos(a) for a in r] for r in ang], dtype="<f4")
    t["freq_cis_imag"] = np.array([[math.sin(a) for a in r] for r in ang], dtype="<f4")
    t["wcls"] = wcls
    t = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in t.items()}
    return Synthetic(config=c, tensors=t, tokenizer=tok, story_ids=story)


def write(out_model, out_tokenizer, seed: int = SEED) -> Synthetic:
    s = build(seed)
    for path, data in ((out_model, s.checkpoint_bytes()), (out_tokenizer, s.tokenizer.to_bytes())):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")     # an interrupted write must not look like a model
        tmp.write_bytes(data)
        tmp.replace(p)
    return s

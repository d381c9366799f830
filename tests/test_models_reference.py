"""Numpy reference: RNG and sampler against C, forward pass against a loop-by-loop twin,
generation on the real stories260K model."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bareflow.model import reference

from bareflow.model import synthetic
from bareflow.errors import BareflowError
from bareflow.model.reference import (Transformer, XorShiftRng, generate, sample_argmax,
                                        sample_topp_probs)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# The brief's RNG and llama2.c's top-p in plain C: the kernel's arithmetic, compiled natively.
C_HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint64_t state;
static uint32_t next_u32(void) {
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return (uint32_t)((state * 0x2545F4914F6CDD1Dull) >> 32);
}
static float coin(void) { return (float)(next_u32() >> 8) / 16777216.0f; }
typedef struct { float p; int i; } PI;
static int cmp(const void *a, const void *b) {
    const PI *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return x->i - y->i;
}
static int topp(const float *probs, int n, float p, float c, PI *buf) {
    int n0 = 0;
    const float cutoff = (1.0f - p) / (n - 1);
    for (int i = 0; i < n; i++) if (probs[i] >= cutoff) { buf[n0].i = i; buf[n0].p = probs[i]; n0++; }
    qsort(buf, n0, sizeof(PI), cmp);
    float cum = 0.0f; int last = n0 - 1;
    for (int i = 0; i < n0; i++) { cum += buf[i].p; if (cum > p) { last = i; break; } }
    float r = c * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) { cdf += buf[i].p; if (r < cdf) return buf[i].i; }
    return buf[last].i;
}
int main(void) {
    unsigned long long seed; int n, trials; float p;
    /* line 1: seed count -> that many coins as float bit patterns
       then: n topp trials, and per trial n probs + coin (bit patterns) -> chosen index */
    if (scanf("%llu %d", &seed, &trials) != 2) return 1;
    state = seed ? seed : 0x853c49e6748fea9bull;
    for (int k = 0; k < trials; k++) { float f = coin(); printf("%u %u\n", bits_of(f), next_u32()); }
    if (scanf("%d %d %f", &n, &trials, &p) != 3) return 1;
    float *probs = malloc(n * sizeof(float)); PI *buf = malloc(n * sizeof(PI));
    for (int t = 0; t < trials; t++) {
        uint32_t bits;
        for (int i = 0; i < n; i++) { scanf("%u", &bits); probs[i] = float_of(bits); }
        scanf("%u", &bits);
        printf("%d\n", topp(probs, n, p, float_of(bits), buf));
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_harness(tmp_path_factory):
    try:
        import ziglang  # noqa: F401
    except ImportError:
        pytest.skip("ziglang is not installed: no C compiler to cross-check against")
    d = tmp_path_factory.mktemp("harness")
    (d / "h.c").write_text(C_HARNESS)
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-O2", "-fno-sanitize=all",
                    str(d / "h.c"), "-o", str(d / "h")], check=True, capture_output=True)
    return d / "h"


def f32_bits(x):
    return int(np.float32(x).view(np.uint32))


@pytest.mark.parametrize("seed", [42, 0, 1, 2**64 - 1])
def test_rng_matches_c_bit_for_bit(c_harness, seed):
    n = 200
    out = subprocess.run([str(c_harness)], input=f"{seed} {n}\n2 0 0.5\n", text=True,
                         capture_output=True, check=True).stdout.split()
    rng = XorShiftRng(seed)
    ours = []
    for _ in range(n):
        ours += [f32_bits(rng.coin()), rng.next_u32()]
    assert ours == [int(v) for v in out]


@pytest.mark.parametrize("topp", [0.9, 0.5, 1.0, 0.05])
def test_topp_matches_c(c_harness, topp):
    # Near-ties and exact ties included: quantised probabilities with repeats.
    gen = np.random.Generator(np.random.PCG64(7))
    n, trials = 40, 300
    lines, expected = [f"1 0", f"{n} {trials} {topp!r}"], []
    for _ in range(trials):
        raw = np.round(gen.random(n) ** 3, 2).astype(np.float32) + np.float32(1e-3)
        probs = (raw / raw.sum(dtype=np.float32)).astype(np.float32)
        coin = np.float32(gen.random())
        lines.append(" ".join(str(f32_bits(x)) for x in probs) + f" {f32_bits(coin)}")
        expected.append(sample_topp_probs(probs, topp, float(coin)))
    out = subprocess.run([str(c_harness)], input="\n".join(lines) + "\n", text=True,
                         capture_output=True, check=True).stdout.split()
    assert [int(v) for v in out] == expected


def test_argmax_takes_lowest_index_on_ties():
    assert sample_argmax(np.array([0.5, 2.0, 2.0, 1.0], np.float32)) == 1


def test_rng_seed_out_of_range():
    with pytest.raises(BareflowError, match="seed=-1"):
        XorShiftRng(-1)


def loop_forward(cfg, w, tokens):
    """llama2.c's forward written as plain loops in float64, for the logits at the last token."""
    d, hs, L = cfg.dim, cfg.head_size, cfg.n_layers
    kv_mul = cfg.n_heads // cfg.n_kv_heads
    kc = np.zeros((L, len(tokens), cfg.kv_dim))
    vc = np.zeros((L, len(tokens), cfg.kv_dim))

    def norm(x, g):
        return np.array(g, np.float64) * x / math.sqrt(sum(v * v for v in x) / len(x) + 1e-5)

    for pos, tok in enumerate(tokens):
        x = np.array(w.token_embedding_table[tok], np.float64)
        for b in range(L):
            xb = norm(x, w.rms_att_weight[b])
            q = w.wq[b].astype(np.float64) @ xb
            k = w.wk[b].astype(np.float64) @ xb
            v = w.wv[b].astype(np.float64) @ xb
            for i in range(0, d, 2):
                f = 1.0 / 10000.0 ** ((i % hs) / hs)
                c, s = math.cos(pos * f), math.sin(pos * f)
                for vec in ((q, k) if i < cfg.kv_dim else (q,)):
                    a, bb = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = a * c - bb * s, a * s + bb * c
            kc[b, pos], vc[b, pos] = k, v
            out = np.zeros(d)
            for h in range(cfg.n_heads):
                kvo = (h // kv_mul) * hs
                sc = np.array([q[h * hs:(h + 1) * hs] @ kc[b, t, kvo:kvo + hs] / math.sqrt(hs)
                               for t in range(pos + 1)])
                att = np.exp(sc - sc.max())
                att /= att.sum()
                for t in range(pos + 1):
                    out[h * hs:(h + 1) * hs] += att[t] * vc[b, t, kvo:kvo + hs]
            x = x + w.wo[b].astype(np.float64) @ out
            xb = norm(x, w.rms_ffn_weight[b])
            h1 = w.w1[b].astype(np.float64) @ xb
            h3 = w.w3[b].astype(np.float64) @ xb
            x = x + w.w2[b].astype(np.float64) @ (h1 / (1 + np.exp(-h1)) * h3)
    return w.wcls.astype(np.float64) @ norm(x, w.rms_final_weight)


def stories():
    model, tok = DATA / "stories260K.bin", DATA / "tok512.bin"
    if not (model.exists() and tok.exists()):
        pytest.skip(f"{DATA}/stories260K.bin and tok512.bin not present")
    return model, tok


@pytest.mark.parametrize("which", ["synthetic", "stories260K"])
def test_forward_matches_loop_twin(which):
    if which == "synthetic":
        s = synthetic.build()
        cfg, w = s.config, s.weights()
    else:
        cfg, w = reference.read_checkpoint(stories()[0])
    model = Transformer((cfg, w))
    tokens = [1, 40, 7, 300, 41, 9]
    for pos, t in enumerate(tokens):
        ours = model.forward(t, pos)
    twin = loop_forward(cfg, w, tokens)
    assert np.allclose(ours, twin, rtol=0, atol=1e-4 * np.abs(twin).max())


def test_forward_rejects_bad_token_and_position():
    model = Transformer((synthetic.build().config, synthetic.build().weights()))
    with pytest.raises(BareflowError, match="token 497"):
        model.forward(497, 0)
    with pytest.raises(BareflowError, match="position 256"):
        model.forward(1, 256)


def test_stories260k_greedy_is_the_known_story():
    model, tok = stories()
    r = generate(model, tok, "Once upon a time", 32)
    assert r["prompt_tokens"] == [1, 403, 407, 261, 378]
    # steps counts every position: 32 - (5 prompt tokens - 1) sampled positions
    assert len(r["tokens"]) == 28 == len(r["logits_margins"])
    # the continuation llama2.c's run prints for this checkpoint at temperature 0
    assert r["text"].startswith(", there was a little girl named Lily. She loved to play")
    letters = sum(ch.isalpha() or ch in " ,.'!?" for ch in r["text"])
    assert letters / len(r["text"]) > 0.95
    assert generate(model, tok, "Once upon a time", 32) == r
    assert min(r["logits_margins"]) > 0


def test_stories260k_sampling_is_seeded():
    model, tok = stories()
    greedy = generate(model, tok, "Once upon a time", 48)
    a = generate(model, tok, "Once upon a time", 48, temperature=1.0, topp=0.9, seed=42)
    b = generate(model, tok, "Once upon a time", 48, temperature=1.0, topp=0.9, seed=42)
    c = generate(model, tok, "Once upon a time", 48, temperature=1.0, topp=0.9, seed=43)
    assert a == b
    assert a["tokens"] != greedy["tokens"] and a["tokens"] != c["tokens"]
    assert 1 not in a["tokens"]   # a sampled BOS ends generation instead of being emitted


def test_steps_count_prompt_positions():
    model, tok = stories()
    assert generate(model, tok, "Once upon a time", 4)["tokens"] == []
    assert len(generate(model, tok, "Once upon a time", 5)["tokens"]) == 1
    empty = generate(model, tok, "", 3)
    assert empty["prompt_tokens"] == [1] and len(empty["tokens"]) == 3
    assert not empty["text"].startswith(" ")   # first piece after BOS loses its space


@pytest.mark.parametrize("kwargs,message", [
    ({"steps": 0}, "steps=0 is outside 1..seq_len=512"),
    ({"steps": 513}, "steps=513"),
    ({"topp": 0.0}, r"topp=0.0 must be in \(0, 1\]"),
    ({"temperature": -1.0}, "temperature=-1.0"),
])
def test_generate_rejects_bad_settings(kwargs, message):
    model, tok = stories()
    args = {"prompt": "Hi", "steps": 8} | kwargs
    with pytest.raises(BareflowError, match=message):
        generate(model, tok, **args)


def test_tokenizer_must_fit_model(tmp_path):
    s = synthetic.write(tmp_path / "m.bin", tmp_path / "t.bin")
    model, tok = stories()
    with pytest.raises(BareflowError, match=r"tokenizer .*tok512\.bin: .*more tokens than the "
                                            rf"model's vocab_size={s.config.vocab_size}"):
        generate(tmp_path / "m.bin", tok, "Hi", 4)


def test_cli_prints_the_same_json():
    model, tok = stories()
    out = subprocess.run([sys.executable, "-m", "bareflow.model.reference", "--model",
                          str(model), "--tokenizer", str(tok), "--prompt", "Once upon a time",
                          "--steps", "20", "--temperature", "0.8", "--seed", "7"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(
        generate(model, tok, "Once upon a time", 20, temperature=0.8, seed=7)))
    bad = subprocess.run([sys.executable, "-m", "bareflow.model.reference", "--model",
                          str(ROOT / "missing.bin"), "--tokenizer", str(tok)],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "missing.bin: file does not exist" in bad.stderr


def test_check_greedy_tells_a_near_tie_from_a_mismatch():
    """reference.check_greedy on crafted logits: a step the reference loses by 1e-5 of the largest
    |logit| is a near-tie, one it loses by 0.2 of it a mismatch; agreeing steps are counted."""
    import types
    import numpy as np
    from bareflow.model.reference import check_greedy

    steps = {0: [0.0, 1.0, 0.0], 1: [10.0, 10.0 - 1e-4, 0.0], 2: [8.0, 0.0, 10.0]}   # logits after pos
    model = types.SimpleNamespace(config=types.SimpleNamespace(seq_len=8), key_cache=np.ones(2),
                                  value_cache=np.ones(2),
                                  forward=lambda token, pos: np.array(steps[pos], np.float32))
    res = check_greedy(model, [1], [1, 1, 0])        # kernel: agree, near-tie loser, clear loser
    assert res["steps"] == 3 and res["agree"] == 1
    tie, miss = res["disagreements"]
    assert (tie["step"], tie["kernel"], tie["reference"], tie["near_tie"]) == (1, 1, 0, True)
    assert (miss["step"], miss["kernel"], miss["reference"], miss["near_tie"]) == (2, 0, 2, False)
    assert abs(miss["relative_gap"] - 0.2) < 1e-6
    assert not model.key_cache.any()                 # the KV cache was cleared first

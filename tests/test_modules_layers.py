"""Each layer module (modules/<name>.c) against a numpy implementation of its contract.

How: every module is compiled natively (x86_64-linux-gnu shared object, -O2, the same
-ffreestanding flags as the kernel build) together with the real src/libc sources it calls.
All libc names are renamed to bft_<name> with -D on both sides so the host libm/libc cannot
interpose.  bf_layer_entry is driven through ctypes structures that mirror layer_abi.h
(the mirror is checked against the C compiler's offsetof()).

Tolerances:
* embed, rmsnorm, qkv, attnout, classify use only float products and float sums in the
  fixed 16-lane order of modules/include/layer_math.h: the reference replays that order
  (lanes_sum32: per-lane sequential np.cumsum in float32, then the same combining tree), so
  they must be bit-identical.  That is the property that makes every tier produce the same tokens.
* rope, attn, ffn call expf/powf/sinf/cosf: the reference uses float64 maths; the bound is
  4 * n * 2^-24 * sum|terms| per output (the classic in-order summation bound gamma_n with
  slack for the float rounding of the transcendental inputs).
* sampler: greedy must match exactly; for top-p the module's probabilities are compared
  with tolerance and the token choice is replayed on the module's own probabilities, so the
  selection logic is checked exactly for hundreds of coins.
"""
import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LIBC = REPO / "src" / "libc"
MODULES = ["embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler"]
LIBC_NAMES = sorted(p.stem for p in LIBC.glob("*/*.c"))
F32 = np.float32
P = ctypes.POINTER(ctypes.c_float)


class Config(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in
                ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len",
                 "head_dim", "rope_dim")] + [("rope_theta", ctypes.c_float), ("rms_eps", ctypes.c_float)]


class Weight(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("type", ctypes.c_int), ("reserved", ctypes.c_int)]


class Weights(ctypes.Structure):
    _fields_ = [(n, P if n.startswith("rms") else Weight)
                for n in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3")]


class State(ctypes.Structure):
    _fields_ = [(n, P) for n in ("x", "xb", "xb2", "hb", "hb2", "q", "att", "logits",
                                 "key_cache", "value_cache", "probs")] + \
               [("indices", ctypes.POINTER(ctypes.c_int))]


class Call(ctypes.Structure):
    _fields_ = [("cfg", ctypes.POINTER(Config)), ("s", ctypes.POINTER(State)),
                ("w", ctypes.POINTER(Weights)), ("block", ctypes.c_int), ("pos", ctypes.c_int),
                ("token", ctypes.c_int), ("out", P), ("in_", P), ("weight", P),
                ("temperature", ctypes.c_float), ("topp", ctypes.c_float),
                ("coin", ctypes.c_float), ("result", ctypes.c_int), ("weight_type", ctypes.c_int),
                ("split", ctypes.c_int), ("phase", ctypes.c_int), ("begin", ctypes.c_int),
                ("end", ctypes.c_int)]


OFFSETS_C = r"""
#include <stddef.h>
#include "bareflow/layer_abi.h"
#define O(t, f) offsetof(struct t, f)
const long bf_offsets[] = {
  sizeof(struct bf_config), sizeof(struct bf_block_weights), sizeof(struct bf_state),
  sizeof(struct bf_layer_call),
  O(bf_state, probs), O(bf_state, indices),
  O(bf_layer_call, block), O(bf_layer_call, token), O(bf_layer_call, out), O(bf_layer_call, in),
  O(bf_layer_call, weight), O(bf_layer_call, temperature), O(bf_layer_call, coin),
  O(bf_layer_call, result),
  O(bf_block_weights, w3), O(bf_config, seq_len),
  O(bf_layer_call, split), O(bf_layer_call, end),
  O(bf_config, rms_eps), O(bf_layer_call, weight_type), O(bf_block_weights, rms_ffn),
};
"""


def zigcc(*args):
    subprocess.run([sys.executable, "-m", "ziglang", "cc", *map(str, args)], check=True)


COMMON = ["-target", "x86_64-linux-gnu", "-fPIC", "-O2", "-ffreestanding", "-fno-sanitize=all",
          f"-I{LIBC / 'include'}", f"-I{REPO / 'src' / 'include'}", f"-I{REPO / 'modules' / 'include'}",
          *[f"-D{n}=bft_{n}" for n in LIBC_NAMES]]


def build_libs(d):
    """Compile libc objects and one shared object per module into directory d."""
    objs = []
    for src in sorted(LIBC.glob("*/*.c")):
        obj = d / f"libc_{src.stem}.o"
        zigcc(*COMMON, "-c", src, "-o", obj)
        objs.append(obj)
    (d / "offsets.c").write_text(OFFSETS_C)
    zigcc(*COMMON, "-shared", d / "offsets.c", "-o", d / "offsets.so")
    libs = {}
    for m in MODULES:
        so = d / f"{m}.so"
        zigcc(*COMMON, "-shared", REPO / "modules" / f"{m}.c", *objs, "-o", so)
        lib = ctypes.CDLL(str(so))
        lib.bf_layer_entry.argtypes = [ctypes.POINTER(Call)]
        lib.bf_layer_entry.restype = None
        libs[m] = lib
    libs["_offsets"] = ctypes.CDLL(str(d / "offsets.so"))
    return libs


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return build_libs(tmp_path_factory.mktemp("modules"))


def test_ctypes_mirror_matches_layer_abi(build):
    got = (ctypes.c_long * 21).in_dll(build["_offsets"], "bf_offsets")
    want = [ctypes.sizeof(Config), ctypes.sizeof(Weights), ctypes.sizeof(State), ctypes.sizeof(Call),
            State.probs.offset, State.indices.offset, Call.block.offset, Call.token.offset,
            Call.out.offset, Call.in_.offset, Call.weight.offset, Call.temperature.offset,
            Call.coin.offset, Call.result.offset, Weights.w3.offset, Config.seq_len.offset,
            Call.split.offset, Call.end.offset,
            Config.rms_eps.offset, Call.weight_type.offset, Weights.rms_ffn.offset]
    assert list(got) == want


class Model:
    """Random weights and a zeroed run state for one config, with ctypes views."""

    def __init__(self, dim=32, hidden=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab=64, seq=16,
                 seed=0):
        r = np.random.default_rng(seed)
        self.cfg = Config(dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq, dim // n_heads,
                          dim // n_heads, 10000.0, 1e-5)
        self.kv_dim = dim * n_kv_heads // n_heads
        self.head_size = dim // n_heads

        def t(*shape, scale=0.3):
            return (r.standard_normal(shape) * scale).astype(F32)

        self.w = {"rms_att": 1 + t(dim), "wq": t(dim, dim), "wk": t(self.kv_dim, dim),
                  "wv": t(self.kv_dim, dim), "wo": t(dim, dim), "rms_ffn": 1 + t(dim),
                  "w1": t(hidden, dim), "w2": t(dim, hidden), "w3": t(hidden, dim)}
        self.s = {"x": t(dim, scale=1.0), "xb": t(dim, scale=1.0), "xb2": np.zeros(dim, F32),
                  "hb": np.zeros(hidden, F32), "hb2": np.zeros(hidden, F32), "q": t(dim, scale=1.0),
                  "att": np.zeros(n_heads * seq, F32), "logits": t(vocab, scale=2.0),
                  "key_cache": t(n_layers, seq, self.kv_dim, scale=1.0),
                  "value_cache": t(n_layers, seq, self.kv_dim, scale=1.0),
                  "probs": np.zeros(vocab, F32)}
        self.indices = np.zeros(vocab, np.int32)
        self.embedding = t(vocab, dim, scale=1.0)
        self.ws = Weights(**{k: ptr(v) if k.startswith("rms") else Weight(v.ctypes.data, 0, 0)
                             for k, v in self.w.items()})
        self.st = State(**{k: ptr(v) for k, v in self.s.items()},
                        indices=self.indices.ctypes.data_as(ctypes.POINTER(ctypes.c_int)))

    def call(self, lib, **fields):
        c = Call(cfg=ctypes.pointer(self.cfg), s=ctypes.pointer(self.st), w=ctypes.pointer(self.ws))
        for k, v in fields.items():
            if isinstance(v, np.ndarray):
                v = ptr(v)
            elif k == "weight" and isinstance(v, int):      # raw address of typed (GGUF) bytes
                v = ctypes.cast(ctypes.c_void_p(v), P)
            setattr(c, k, v)
        lib.bf_layer_entry(ctypes.byref(c))
        return c


def ptr(a):
    assert a.dtype == F32 and a.flags.c_contiguous
    return a.ctypes.data_as(P)


LANES = 16


def lanes_sum32(terms):
    """Sum each row of float32 `terms` (shape [rows, n] or [n]) exactly as layer_math.h does:
    element j into lane j % 16 in increasing j, then s8 = l[:8] + l[8:], s4, s2, s2[0] + s2[1]."""
    t = np.atleast_2d(np.asarray(terms, F32))
    rows, n = t.shape
    padded = np.zeros((rows, -(-n // LANES) * LANES), F32)   # +0.0 terms leave a lane unchanged
    padded[:, :n] = t
    lanes = np.cumsum(padded.reshape(rows, -1, LANES), axis=1, dtype=F32)[:, -1, :]
    while lanes.shape[1] > 1:
        half = lanes.shape[1] // 2
        lanes = (lanes[:, :half] + lanes[:, half:]).astype(F32)
    out = lanes[:, 0]
    return out if np.ndim(terms) == 2 else out[0]


def matmul32(w, x):
    """The modules' matmul replayed exactly: float32 products summed in the lane order."""
    return lanes_sum32(w * x[None, :])


def test_lanes_sum32_is_not_the_sequential_sum():
    # The order shows: on random rows the lane order and the j order differ in the last bits.
    terms = np.random.default_rng(5).standard_normal((50, 100)).astype(F32)
    assert (lanes_sum32(terms) != np.cumsum(terms, axis=1, dtype=F32)[:, -1]).any()
    assert np.allclose(lanes_sum32(terms), terms.astype(np.float64).sum(axis=1), atol=1e-4)
    assert lanes_sum32(np.arange(40, dtype=F32)) == F32(780)


def rmsnorm32(x, weight):
    ss = lanes_sum32(x * x)
    ss = F32(ss / F32(x.size)) + F32(1e-5)
    ss = F32(1.0) / np.sqrt(F32(ss))
    return weight * (ss * x)


def bound(terms_abs_sum, n):
    return 4 * n * 2.0 ** -24 * terms_abs_sum + 1e-30


def test_embed(build):
    m = Model()
    for tok in (0, 5, 63):
        m.call(build["embed"], token=tok, weight=m.embedding)
        assert np.array_equal(m.s["x"], m.embedding[tok])


def test_rmsnorm_exact_and_in_place(build):
    m = Model(dim=96)
    src = m.s["x"].copy()
    m.call(build["rmsnorm"], out=m.s["xb"], in_=m.s["x"], weight=m.w["rms_att"])
    assert np.array_equal(m.s["xb"], rmsnorm32(src, m.w["rms_att"]))
    assert np.array_equal(m.s["x"], src)                       # input untouched
    m.call(build["rmsnorm"], out=m.s["x"], in_=m.s["x"], weight=m.w["rms_ffn"])   # out == in
    assert np.array_equal(m.s["x"], rmsnorm32(src, m.w["rms_ffn"]))
    # and it is what float64 maths says, to float accuracy
    ref = m.w["rms_ffn"] * src / np.sqrt(np.mean(src.astype(np.float64) ** 2) + 1e-5)
    assert np.allclose(m.s["x"], ref, rtol=1e-5, atol=1e-6)


def test_qkv_writes_cache_slot_only(build):
    m = Model(n_kv_heads=2)
    kc, vc = m.s["key_cache"].copy(), m.s["value_cache"].copy()
    m.call(build["qkv"], block=1, pos=5)
    assert np.array_equal(m.s["q"], matmul32(m.w["wq"], m.s["xb"]))
    kc[1, 5] = matmul32(m.w["wk"], m.s["xb"])
    vc[1, 5] = matmul32(m.w["wv"], m.s["xb"])
    assert np.array_equal(m.s["key_cache"], kc)
    assert np.array_equal(m.s["value_cache"], vc)


def rope_ref(vec, pos, head_size, n):
    out = vec.astype(np.float64).copy()
    for i in range(0, n, 2):
        freq = 1.0 / 10000.0 ** ((i % head_size) / head_size)
        a = pos * freq
        v0, v1 = out[i], out[i + 1]
        out[i], out[i + 1] = v0 * np.cos(a) - v1 * np.sin(a), v0 * np.sin(a) + v1 * np.cos(a)
    return out


@pytest.mark.parametrize("pos", [0, 1, 7, 15])
def test_rope(build, pos):
    m = Model(dim=64, n_heads=4, n_kv_heads=2, seq=16)
    q, k = m.s["q"].copy(), m.s["key_cache"][1, pos].copy()
    other = m.s["key_cache"].copy()
    m.call(build["rope"], block=1, pos=pos)
    # each output is a 2-term sum of |v| * |trig|: bound from the pair magnitudes
    for got, src, n in ((m.s["q"], q, 64), (m.s["key_cache"][1, pos], k, m.kv_dim)):
        ref = rope_ref(src, pos, m.head_size, n)
        mag = np.repeat(np.abs(src.reshape(-1, 2)).sum(axis=1), 2).astype(np.float64)
        assert np.all(np.abs(got - ref) <= bound(mag, 8)), (pos, np.max(np.abs(got - ref)))
    other[1, pos] = m.s["key_cache"][1, pos]
    assert np.array_equal(m.s["key_cache"], other)   # nothing else in the cache moves


def test_rope_long_positions(build):
    """RoPE angles reach seq_len: check far positions (TinyLlama's 2047) stay accurate."""
    m = Model(dim=64, n_heads=1, n_kv_heads=1, seq=2048, n_layers=1)
    pos = 2047
    q = m.s["q"].copy()
    m.call(build["rope"], block=0, pos=pos)
    ref = rope_ref(q, pos, 64, 64)
    mag = np.repeat(np.abs(q.reshape(-1, 2)).sum(axis=1), 2)
    # pos*freq is rounded to float before cos/sin (as llama2.c): allow that rounding,
    # |d angle| <= ulp(pos*freq)/2 ~ 2048 * 2^-24, times the pair magnitude.
    assert np.all(np.abs(m.s["q"] - ref) <= mag * (2048 * 2.0 ** -24) + bound(mag, 8))


def attn_ref(m, block, pos):
    n_heads, hs = m.cfg.n_heads, m.head_size
    kv_mul = n_heads // m.cfg.n_kv_heads
    q = m.s["q"].astype(np.float64)
    K = m.s["key_cache"][block, :pos + 1].astype(np.float64)
    V = m.s["value_cache"][block, :pos + 1].astype(np.float64)
    out, att_all, tol = np.zeros(m.cfg.dim), [], np.zeros(m.cfg.dim)
    for h in range(n_heads):
        kh = (h // kv_mul) * hs
        qh = q[h * hs:(h + 1) * hs]
        scores = K[:, kh:kh + hs] @ qh / np.sqrt(hs)
        att = np.exp(scores - scores.max())
        att /= att.sum()
        att_all.append(att)
        out[h * hs:(h + 1) * hs] = att @ V[:, kh:kh + hs]
        # error: each score is an hs-term sum; softmax is Lipschitz 1 in max-norm,
        # then a (pos+1)-term weighted sum of |v|
        s_err = bound(np.abs(K[:, kh:kh + hs]) @ np.abs(qh) / np.sqrt(hs), hs).max()
        vabs = np.abs(V[:, kh:kh + hs]).max(axis=0)
        tol[h * hs:(h + 1) * hs] = 2 * s_err * vabs + bound(vabs, pos + 1) + 8 * 2.0 ** -24 * vabs
    return out, att_all, tol


@pytest.mark.parametrize("n_heads,n_kv_heads", [(4, 4), (4, 2), (8, 2), (4, 1)])
@pytest.mark.parametrize("pos", [0, 3, 15])
def test_attn_gqa(build, n_heads, n_kv_heads, pos):
    m = Model(dim=64, n_heads=n_heads, n_kv_heads=n_kv_heads, seq=16, seed=pos + n_heads)
    ref, att, tol = attn_ref(m, 1, pos)
    m.call(build["attn"], block=1, pos=pos)
    assert np.all(np.abs(m.s["xb"] - ref) <= tol), np.max(np.abs(m.s["xb"] - ref) - tol)
    for h in range(n_heads):                 # attention weights land in s->att[h*seq_len + t]
        got = m.s["att"][h * 16:h * 16 + pos + 1]
        assert np.allclose(got, att[h], rtol=1e-5, atol=1e-7)
        assert abs(got.astype(np.float64).sum() - 1) < 1e-5


def test_attn_uses_right_kv_head(build):
    """With GQA, query heads 0,1 must read kv head 0 and heads 2,3 kv head 1 (not h % n_kv)."""
    m = Model(dim=16, n_heads=4, n_kv_heads=2, seq=4, n_layers=1)
    m.s["key_cache"][:] = 0                         # uniform attention over t <= pos
    m.s["value_cache"][0, :, :4] = 1.0              # kv head 0 -> ones
    m.s["value_cache"][0, :, 4:] = 2.0              # kv head 1 -> twos
    m.call(build["attn"], block=0, pos=3)
    assert np.allclose(m.s["xb"], [1.0] * 8 + [2.0] * 8)


def test_attnout(build):
    m = Model()
    x0 = m.s["x"].copy()
    m.call(build["attnout"])
    y = matmul32(m.w["wo"], m.s["xb"])
    assert np.array_equal(m.s["xb2"], y)
    assert np.array_equal(m.s["x"], x0 + y)


def test_ffn(build):
    m = Model(dim=32, hidden=80)
    x0, xb = m.s["x"].astype(np.float64), m.s["xb"].astype(np.float64)
    w1, w2, w3 = (m.w[k].astype(np.float64) for k in ("w1", "w2", "w3"))
    a, b = w1 @ xb, w3 @ xb
    hb = a / (1 + np.exp(-a)) * b
    y = w2 @ hb
    m.call(build["ffn"])
    # hb carries the error of two dim-term sums through silu (|silu'| <= 1.1) and a product
    e_a = bound(np.abs(w1) @ np.abs(xb), 32)
    e_b = bound(np.abs(w3) @ np.abs(xb), 32)
    e_hb = 1.1 * e_a * np.abs(b) + np.abs(a) * e_b + 4 * 2.0 ** -24 * np.abs(hb)
    tol_y = np.abs(w2) @ e_hb + bound(np.abs(w2) @ np.abs(hb), 80)
    assert np.all(np.abs(m.s["hb"] - hb) <= e_hb)
    assert np.all(np.abs(m.s["xb"] - y) <= tol_y)
    assert np.all(np.abs(m.s["x"] - (x0 + y)) <= tol_y + 2.0 ** -23 * np.abs(x0 + y))


def test_classify(build):
    m = Model(vocab=300)
    table = np.random.default_rng(3).standard_normal((300, 32)).astype(F32)
    m.call(build["classify"], weight=table)
    assert np.array_equal(m.s["logits"], matmul32(table, m.s["x"]))


def test_sampler_greedy(build):
    m = Model(vocab=100)
    r = np.random.default_rng(4)
    for _ in range(50):
        m.s["logits"][:] = r.standard_normal(100).astype(F32)
        c = m.call(build["sampler"], temperature=0.0, topp=0.9, coin=0.7)
        assert c.result == int(np.argmax(m.s["logits"]))
    m.s["logits"][:] = 0
    m.s["logits"][[7, 42]] = 3.0                       # tie: lowest index wins
    assert m.call(build["sampler"], temperature=0.0, coin=0.1).result == 7


def softmax32_ref(logits, temperature):
    z = logits.astype(np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def topp_choice(probs, topp, coin):
    """llama2.c sample_topp, replayed in float32 on given probabilities."""
    n = probs.size
    cutoff = F32((F32(1.0) - F32(topp)) / F32(n - 1))
    cand = [i for i in range(n) if probs[i] >= cutoff]
    if not cand:
        return int(np.argmax(probs))
    cand.sort(key=lambda i: (-probs[i], i))
    cum, last = F32(0), len(cand) - 1
    for k, i in enumerate(cand):
        cum = F32(cum + probs[i])
        if cum > F32(topp):
            last = k
            break
    rr, cdf = F32(F32(coin) * cum), F32(0)
    for k in range(last + 1):
        cdf = F32(cdf + probs[cand[k]])
        if rr < cdf:
            return cand[k]
    return cand[last]


def mult_choice(probs, coin):
    cdf = F32(0)
    for i in range(probs.size):
        cdf = F32(cdf + probs[i])
        if F32(coin) < cdf:
            return i
    return probs.size - 1


@pytest.mark.parametrize("temperature,topp", [(1.0, 0.9), (0.8, 0.5), (1.3, 0.99), (0.5, 0.1),
                                              (1.0, 1.0), (0.7, 0.0)])
def test_sampler_topp(build, temperature, topp):
    vocab = 200
    m = Model(vocab=vocab)
    r = np.random.default_rng(int(temperature * 10 + topp * 100))
    logits = (r.standard_normal(vocab) * 2).astype(F32)
    logits[[10, 11, 150]] = logits.max()                 # ties at the top of the order
    m.s["logits"][:] = logits
    chosen = set()
    for coin in np.linspace(0, 0.999, 300, dtype=F32):
        c = m.call(build["sampler"], temperature=temperature, topp=topp, coin=float(coin))
        probs = m.s["probs"]
        assert np.allclose(probs, softmax32_ref(logits, temperature), rtol=1e-5, atol=1e-9)
        assert np.array_equal(m.s["logits"], logits)     # logits are left alone
        want = topp_choice(probs, topp, coin) if 0 < topp < 1 else mult_choice(probs, coin)
        assert c.result == want, (coin, c.result, want)
        chosen.add(c.result)
    if 0 < topp < 1:
        # everything chosen lies in the nucleus computed in float64
        p = softmax32_ref(logits, temperature)
        order = sorted(range(vocab), key=lambda i: (-p[i], i))
        k = int(np.searchsorted(np.cumsum([p[i] for i in order]), topp, side="right")) + 1
        assert chosen <= set(order[:k + 1])
        assert len(chosen) > 1 or k <= 1


def test_sampler_topp_coin_extremes_and_ties(build):
    m = Model(vocab=10)
    m.s["logits"][:] = np.array([0, 5, 5, 1, 5, 0, 0, 0, 0, 0], F32)
    # three equal top candidates (1, 2, 4): order must be index ascending
    got = [m.call(build["sampler"], temperature=1.0, topp=0.9, coin=c).result
           for c in (0.0, 0.34, 0.67, 0.999)]
    assert got == [1, 2, 4, 4]


def test_sampler_tiny_topp_falls_back_to_argmax(build):
    """topp < 1/n with a flat distribution leaves no candidate above the cutoff."""
    m = Model(vocab=50)
    m.s["logits"][:] = 0.0
    m.s["logits"][9] = 1e-7
    assert m.call(build["sampler"], temperature=1.0, topp=0.001, coin=0.5).result == 9


@pytest.mark.parametrize("dim, vocab", [(40, 63), (8, 5), (24, 1)])
def test_matmul_and_rmsnorm_tails_exact(build, dim, vocab):
    """Lengths that are not multiples of 16 (a zero-padded last step) and an odd row count
    (the matmul walks rows in pairs) still follow the lane order bit for bit."""
    m = Model(dim=dim, hidden=dim, n_heads=2, n_kv_heads=1, vocab=vocab)
    table = np.random.default_rng(dim).standard_normal((vocab, dim)).astype(F32)
    m.call(build["classify"], weight=table)
    assert np.array_equal(m.s["logits"], matmul32(table, m.s["x"]))
    src = m.s["x"].copy()
    m.call(build["rmsnorm"], out=m.s["xb"], in_=m.s["x"], weight=m.w["rms_att"])
    assert np.array_equal(m.s["xb"], rmsnorm32(src, m.w["rms_att"]))


# Layer ABI 3: a layer called in chunks (split=1, one phase, a unit range) must give bit-identical
# state to the whole call, for any chunking - the kernel's multi-core split relies on it.
SPLIT_PHASES = {"qkv": lambda m: [m.cfg.dim + 2 * m.kv_dim], "attn": lambda m: [m.cfg.n_heads],
                "attnout": lambda m: [m.cfg.dim], "ffn": lambda m: [m.cfg.hidden_dim, m.cfg.dim],
                "classify": lambda m: [m.cfg.vocab_size]}


def _split_call(build, m, layer, cuts, **fields):
    """Run every phase of `layer` as chunks bounded by `cuts` (fractions), last chunk first."""
    for phase, units in enumerate(SPLIT_PHASES[layer](m)):
        bounds = sorted({0, units, *(int(units * f) for f in cuts)})
        for b, e in reversed(list(zip(bounds, bounds[1:]))):
            m.call(build[layer], split=1, phase=phase, begin=b, end=e, **fields)


@pytest.mark.parametrize("layer", sorted(SPLIT_PHASES))
@pytest.mark.parametrize("cuts", [(0.5,), (0.25, 0.5, 0.75), (0.1, 0.13, 0.9)])
def test_split_calls_are_bit_identical_to_whole_calls(build, layer, cuts):
    fields = {"block": 1, "pos": 5}
    if layer == "classify":
        fields["weight"] = None
    whole, parts = Model(n_heads=8, n_kv_heads=2, seed=3), Model(n_heads=8, n_kv_heads=2, seed=3)
    if layer == "classify":
        fields["weight"] = whole.embedding
        whole.call(build[layer], **fields)
        fields["weight"] = parts.embedding
        _split_call(build, parts, layer, cuts, **fields)
    else:
        whole.call(build[layer], **fields)
        _split_call(build, parts, layer, cuts, **fields)
    for name in whole.s:
        assert np.array_equal(whole.s[name], parts.s[name]), (layer, name)


def test_split_call_for_another_phase_or_empty_range_writes_nothing(build):
    m = Model()
    before = {k: v.copy() for k, v in m.s.items()}
    m.call(build["ffn"], split=1, phase=2, begin=0, end=m.cfg.dim)     # no such phase
    m.call(build["qkv"], split=1, phase=0, begin=7, end=7)             # empty chunk
    m.call(build["attnout"], split=1, phase=1, begin=0, end=m.cfg.dim)
    for name in before:
        assert np.array_equal(before[name], m.s[name]), name


# --- typed weights (modules/include/quant.h) -------------------------------------------------

TYPE_CODES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8}


def quantised(values, name):
    """GGUF bytes of float32 `values` [rows, cols] in type `name`, written by the gguf package."""
    import gguf
    if name == "F32":
        return np.ascontiguousarray(values, F32)
    if name == "F16":
        return np.ascontiguousarray(values, np.float16)
    return gguf.quants.quantize(values.astype(F32), gguf.GGMLQuantizationType[name])


def dequantised(data, name):
    import gguf
    return np.asarray(gguf.quants.dequantize(data, gguf.GGMLQuantizationType[name]), F32)


def typed_matmul_replay(data, name, x, rows, cols):
    """quant.h's order in float32: F32/F16 the lane order of layer_math.h (matmul32); block types 16 lanes, lane l of block k
    adds d * (q[l]*x[l] + q[l+16]*x[l+16]) (+ m * (x[l] + x[l+16]) for Q4_1), then the fixed tree."""
    if name in ("F32", "F16"):
        w = np.asarray(data).view(F32 if name == "F32" else np.float16).reshape(rows, cols).astype(F32)
        return matmul32(w, x)
    raw = np.asarray(data, np.uint8).reshape(rows, cols // 32, -1)
    d = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(F32)
    if name == "Q8_0":
        q = raw[..., 2:].view(np.int8).astype(F32)
    else:
        qs = raw[..., 4:] if name == "Q4_1" else raw[..., 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(F32)
        if name == "Q4_0":
            q = q - F32(8)
    xb = x.reshape(cols // 32, 32)
    t = (q[..., :16] * xb[None, :, :16]).astype(F32) + (q[..., 16:] * xb[None, :, 16:]).astype(F32)
    acc = np.zeros((rows, 16), F32)
    for k in range(cols // 32):
        acc = (acc + (d[:, k:k + 1] * t[:, k]).astype(F32)).astype(F32)
        if name == "Q4_1":
            m = raw[:, k, 2:4].copy().view(np.float16)[:, 0:1].astype(F32)
            acc = (acc + (m * (xb[k, :16] + xb[k, 16:])).astype(F32)).astype(F32)
    s8 = acc[:, :8] + acc[:, 8:]
    s4 = s8[:, :4] + s8[:, 4:]
    return (s4[:, 0] + s4[:, 2]) + (s4[:, 1] + s4[:, 3])


@pytest.mark.parametrize("name", list(TYPE_CODES))
def test_classify_typed_weights_exact(build, name):
    """matmul_typed on GGUF blocks written by the gguf package: bit-exact to the documented order,
    and close to float64 maths on the dequantised weights."""
    m = Model(dim=64, vocab=96)
    values = np.random.default_rng(11).standard_normal((96, 64)).astype(F32)
    data = quantised(values, name)
    m.call(build["classify"], weight=data.ctypes.data, weight_type=TYPE_CODES[name])
    assert np.array_equal(m.s["logits"], typed_matmul_replay(data, name, m.s["x"], 96, 64))
    w = dequantised(data, name).reshape(96, 64).astype(np.float64)
    assert np.allclose(m.s["logits"], w @ m.s["x"], rtol=1e-4, atol=1e-3)
    if name != "F32":   # quantisation really happened: not the float weights
        assert not np.array_equal(w.astype(F32), values)


@pytest.mark.parametrize("name", list(TYPE_CODES))
def test_embed_dequantises_row(build, name):
    m = Model(dim=64, vocab=40)
    table = quantised(np.random.default_rng(5).standard_normal((40, 64)).astype(F32), name)
    want = dequantised(table, name).reshape(40, 64)
    for tok in (0, 17, 39):
        m.call(build["embed"], token=tok, weight=table.ctypes.data, weight_type=TYPE_CODES[name])
        assert np.array_equal(m.s["x"], want[tok])


def fp16_widened_bits(halves):
    """IEEE 754 binary16 -> binary32 bit patterns, in integers only (uint16 array -> uint32): the
    sign moves to bit 31, the exponent is rebiased 15 -> 127 (31 -> 255), the mantissa moves up 13
    places (NaN payloads kept, nothing quietened), and a subnormal is normalised."""
    h = np.asarray(halves, np.uint32)
    sign, exp, man = (h & 0x8000) << 16, (h >> 10) & 0x1F, h & 0x3FF
    out = np.where(exp == 0x1F, 0x7F800000 | (man << 13), ((exp + 112) << 23) | (man << 13))
    # subnormal: value man * 2^-24; shift the mantissa until its top bit reaches bit 10
    shift = np.zeros_like(man)
    for k in range(1, 11):
        shift = np.where((man != 0) & ((man << shift) & 0x400 == 0), k, shift)
    sub = ((113 - shift) << 23) | (((man << shift) & 0x3FF) << 13)
    out = np.where(exp == 0, np.where(man == 0, 0, sub), out)
    return (sign | out).astype(np.uint32)


def test_fp16_bits_helper_agrees_with_numpy():
    """The integer reference above against numpy's own float16 -> float32 on every non-NaN value."""
    halves = np.arange(65536, dtype=np.uint16)
    want = halves.view(np.float16).astype(F32)
    ok = ~np.isnan(want)
    assert np.array_equal(fp16_widened_bits(halves)[ok], want.view(np.uint32)[ok])


def test_fp16_conversion_every_value(build, tmp_path):
    """fp16_to_f32 on all 65536 bit patterns (subnormals, infinities, NaN payloads included),
    via embed: every bit equals IEEE widening."""
    m = Model(dim=2048, vocab=32, n_heads=1, n_kv_heads=1, hidden=32, seq=1)
    halves = np.arange(65536, dtype=np.uint16)
    want = fp16_widened_bits(halves)
    for tok in range(32):
        m.call(build["embed"], token=tok, weight=halves.ctypes.data, weight_type=1)
        assert np.array_equal(m.s["x"].view(np.uint32), want[tok * 2048:(tok + 1) * 2048])


def test_qkv_attnout_ffn_typed(build):
    """The block layers take their matrices' types from bf_weight: Q8_0 / Q4_1 / Q4_0 mixed."""
    m = Model(dim=64, hidden=96, n_heads=4, n_kv_heads=2)
    r = np.random.default_rng(9)
    kinds = {"wq": ("Q8_0", 64, 64), "wk": ("Q4_1", 32, 64), "wv": ("Q4_0", 32, 64), "wo": ("F16", 64, 64),
             "w1": ("Q4_0", 96, 64), "w2": ("Q8_0", 64, 96), "w3": ("Q4_1", 96, 64)}
    keep = {}
    for k, (name, rows, cols) in kinds.items():
        keep[k] = quantised(r.standard_normal((rows, cols)).astype(F32) * F32(0.3), name)
        setattr(m.ws, k, Weight(keep[k].ctypes.data, TYPE_CODES[name], 0))
    xb = m.s["xb"].copy()
    m.call(build["qkv"], block=1, pos=3)
    assert np.array_equal(m.s["q"], typed_matmul_replay(keep["wq"], "Q8_0", xb, 64, 64))
    assert np.array_equal(m.s["key_cache"][1, 3], typed_matmul_replay(keep["wk"], "Q4_1", xb, 32, 64))
    assert np.array_equal(m.s["value_cache"][1, 3], typed_matmul_replay(keep["wv"], "Q4_0", xb, 32, 64))
    x0 = m.s["x"].copy()
    m.call(build["attnout"])
    y = typed_matmul_replay(keep["wo"], "F16", xb, 64, 64)
    assert np.array_equal(m.s["x"], x0 + y)
    x0, xb = m.s["x"].copy(), m.s["xb"].copy()
    m.call(build["ffn"])
    a = typed_matmul_replay(keep["w1"], "Q4_0", xb, 96, 64).astype(np.float64)
    b = typed_matmul_replay(keep["w3"], "Q4_1", xb, 96, 64).astype(np.float64)
    hb = a / (1 + np.exp(-a)) * b
    y = dequantised(keep["w2"], "Q8_0").reshape(64, 96).astype(np.float64) @ hb
    assert np.allclose(m.s["x"], x0 + y, rtol=1e-4, atol=1e-4)


def test_rope_theta_and_partial_rotation(build):
    """rope_theta and rope_dim come from the config: dims past rope_dim stay as they are."""
    m = Model(dim=64, n_heads=2, n_kv_heads=1, seq=8)
    m.cfg.rope_theta = 100000.0
    m.cfg.rope_dim = 16
    q = m.s["q"].copy()
    m.call(build["rope"], block=0, pos=5)
    for h in range(2):
        head = slice(h * 32, h * 32 + 32)
        assert np.array_equal(m.s["q"][head][16:], q[head][16:])
        v = q[head][:16].astype(np.float64).reshape(-1, 2)
        ang = 5 / 100000.0 ** (np.arange(0, 16, 2) / 16)
        want = np.stack([v[:, 0] * np.cos(ang) - v[:, 1] * np.sin(ang),
                         v[:, 0] * np.sin(ang) + v[:, 1] * np.cos(ang)], axis=1).ravel()
        assert np.allclose(m.s["q"][head][:16], want, rtol=1e-5, atol=1e-5)


def test_rmsnorm_epsilon_from_config(build):
    m = Model(dim=32)
    m.cfg.rms_eps = 0.5
    x = np.full(32, 0.1, F32)
    m.s["x"][:] = x
    m.call(build["rmsnorm"], out=m.s["xb"], in_=m.s["x"], weight=m.w["rms_att"])
    want = m.w["rms_att"] * x / np.sqrt(0.01 + 0.5)
    assert np.allclose(m.s["xb"], want, rtol=1e-6)

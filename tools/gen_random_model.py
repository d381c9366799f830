#!/usr/bin/env python3
"""Write a random-weight llama2.c checkpoint of a named shape, with a matching tokenizer.

Shapes (llama2.c's TinyStories sizes; the classifier is shared with the embedding, as in
stories15M):
    15M   dim 288, hidden 768, 6 blocks, 6 heads, 6 kv heads, vocab 32000
    42M   dim 512, hidden 1376, 8 blocks, 8 heads, 4 kv heads (GQA), vocab 32000
seq_len is 256 for both (enough for the benchmark's 200 tokens).  Weights are uniform with an
RMS of 1/sqrt(fan-in), so activations stay of order one through every block; RMSNorm gains
are 1.  The tokenizer has llama2.c's first three tokens, the 256 byte tokens <0x00>..<0xFF>,
every printable ASCII character and generated multi-letter pieces up to the vocabulary size,
so llama2.c's run.c and BareFlow both encode and decode any prompt with it.

    python tools/gen_random_model.py 15M --out-model /tmp/m15.bin --out-tokenizer /tmp/t15.bin

Same arguments, same bytes (numpy's PCG64 stream with a fixed seed).
"""
import argparse
import string
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any directory

from bareflow.model.checkpoint import ModelConfig, tensor_shapes  # noqa: E402
from bareflow.model.tokenizer import write_tokenizer  # noqa: E402

SHAPES = {
    "15M": ModelConfig(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=32000,
                       seq_len=256, shared_classifier=True),
    "42M": ModelConfig(dim=512, hidden_dim=1376, n_layers=8, n_heads=8, n_kv_heads=4, vocab_size=32000,
                       seq_len=256, shared_classifier=True),
}


def tokenizer_pieces(vocab_size):
    """llama2.c's layout: <unk>, <s>, </s>, 256 byte tokens, then text pieces."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)]
    pieces += [c.encode() for c in string.printable if c.isprintable()]     # includes " "
    letters = string.ascii_lowercase
    n = 0
    while len(pieces) < vocab_size:     # " ab", "ab", " abc", ... distinct, deterministic
        word, k = "", n
        while True:
            word += letters[k % 26]
            k //= 26
            if k == 0:
                break
        for piece in (" " + word * 2, word * 2):
            if len(pieces) < vocab_size:
                pieces.append(piece.encode())
        n += 1
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(pieces) - 259)]
    return pieces, scores


def write(shape, out_model, out_tokenizer, seed=1234):
    """Write the checkpoint and tokenizer; returns the ModelConfig.  Raises KeyError on an
    unknown shape name."""
    c = SHAPES[shape]
    rng = np.random.Generator(np.random.PCG64(seed))
    fan_in = {"wq": c.dim, "wk": c.dim, "wv": c.dim, "wo": c.dim, "w1": c.dim, "w3": c.dim,
              "w2": c.hidden_dim, "token_embedding_table": c.dim}
    with open(out_model, "wb") as f:
        f.write(struct.pack("<7i", *c.header_values()))
        for name, shape_ in tensor_shapes(c):
            if name.startswith("rms_"):
                t = np.ones(shape_, "<f4")
            elif name.startswith("freq_cis"):
                t = np.zeros(shape_, "<f4")     # legacy tables nobody reads
            else:
                limit = np.sqrt(3.0 / fan_in[name])     # uniform(-a, a) has RMS a / sqrt(3)
                t = (rng.random(shape_, dtype=np.float32) * np.float32(2 * limit) - np.float32(limit))
            f.write(np.ascontiguousarray(t, "<f4").tobytes())
    pieces, scores = tokenizer_pieces(c.vocab_size)
    write_tokenizer(out_tokenizer, pieces, scores)
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("--out-model", required=True)
    ap.add_argument("--out-tokenizer", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    c = write(args.shape, args.out_model, args.out_tokenizer, args.seed)
    print(f"wrote {args.out_model} ({Path(args.out_model).stat().st_size} bytes, {c}) and {args.out_tokenizer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

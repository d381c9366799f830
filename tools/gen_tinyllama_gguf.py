#!/usr/bin/env python3
"""Write a GGUF with TinyLlama-1.1B's exact shape and random Q4_0 weights.

Hyperparameters are TinyLlama-1.1B-Chat-v1.0's (22 blocks, dim 2048, 32 query / 4 key-value heads,
FFN 5632, context 2048, RoPE base 10000, RMS epsilon 1e-5); the vocabulary is the llama SentencePiece
one (32000 tokens) copied key by key from llama.cpp's ggml-vocab-llama-spm.gguf, which tools/setup.sh
caches from the llama-cpp-python 0.3.36 sdist.  Weights are random Q4_0 blocks (random nibbles, a
fixed fp16 scale per matrix giving a standard deviation of about 1/sqrt(fan-in)), written block by
block without a float copy: the file is about 640 MB.  It is a stand-in of the real model's size and
cost, not of its text.

    .venv/bin/python tools/gen_tinyllama_gguf.py [--out PATH] [--vocab PATH] [--seed N]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import fetch_models  # noqa: E402

SHAPE = dict(n_layers=22, dim=2048, hidden_dim=5632, n_heads=32, n_kv_heads=4, vocab_size=32000,
             context_length=2048, rope_theta=10000.0, rms_eps=1e-5)


def default_out() -> Path:
    return fetch_models.cache_dir() / "tinyllama-1.1b-shape-random-q4_0.gguf"


def _q4_0(rng, rows, cols, std):
    """Random Q4_0 rows: 18-byte blocks (fp16 d, 16 bytes of nibbles); uniform nibbles have
    standard deviation ~4.6, so d = std / 4.6."""
    blocks = np.empty((rows, cols // 32, 18), np.uint8)
    blocks[..., 2:] = rng.integers(0, 256, size=(rows, cols // 32, 16), dtype=np.uint8)
    blocks[..., 0:2] = np.array([std / 4.6], np.float16).view(np.uint8)
    return blocks.reshape(rows, -1)


def write(out, vocab_path, seed=0):
    import gguf
    from bareflow.model import weightsfile as wf

    vocab = gguf.GGUFReader(str(vocab_path))
    s = SHAPE
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("TinyLlama-1.1B shape, random Q4_0 weights")
    w.add_block_count(s["n_layers"])
    w.add_embedding_length(s["dim"])
    w.add_feed_forward_length(s["hidden_dim"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    w.add_context_length(s["context_length"])
    w.add_rope_freq_base(s["rope_theta"])
    w.add_rope_dimension_count(s["dim"] // s["n_heads"])
    w.add_layer_norm_rms_eps(s["rms_eps"])
    w.add_vocab_size(s["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    for key, field in vocab.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    rng = np.random.default_rng(seed)
    cfg = wf.WeightsConfig(s["dim"], s["hidden_dim"], s["n_layers"], s["n_heads"], s["n_kv_heads"],
                           s["vocab_size"], s["context_length"], 64, 64, s["rope_theta"], s["rms_eps"], False)
    for kind, block, rows, cols in wf.tensor_order(cfg):
        name = wf.tensor_name(kind, block) + ".weight"
        if kind in wf.NORM_KINDS:
            w.add_tensor(name, np.ones(cols, np.float32))
        else:
            std = 1.0 if kind == "token_embd" else cols ** -0.5
            w.add_tensor(name, _q4_0(rng, rows, cols, std), raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=default_out())
    ap.add_argument("--vocab", type=Path, default=fetch_models.llama_vocab_path("llama-spm"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.vocab.is_file():
        print(f"gen_tinyllama_gguf: {args.vocab} not found (run tools/setup.sh online)", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".part")
    write(tmp, args.vocab, args.seed)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The numpy reference (reference.Transformer) on a GGUF model: weights dequantised with gguf.quants.

Activations stay float32 as in the kernel (llama.cpp instead quantises them to 8 bits for its
quantised matmuls, so its tokens may drift from both).  The weights are the values the kernel's
blocks encode: a tensor of a kernel type is dequantised from its own bytes; one the build
converts (WEIGHTS=) is converted exactly as the build does before dequantising, so reference and
kernel see the same numbers.

    python -m bareflow.model.gguf_reference --model F.gguf --prompt "Once upon a time" --steps 48
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import gguf_model
from . import weightsfile as wf
from .reference import Transformer, generate
from .checkpoint import Weights


def _values(data, ggml_type: int, rows: int, cols: int):
    import gguf
    qtype = gguf.GGMLQuantizationType(ggml_type)
    return np.asarray(gguf.quants.dequantize(np.asarray(data), qtype), np.float32).reshape(rows, cols)


def load(path, weights: str = "auto", seq_len: int | None = None):
    """(weightsfile.WeightsConfig, model.Weights) with float32 arrays, for reference.Transformer((cfg, w)).
    seq_len: positions the reference's KV cache holds (default: the model's)."""
    m = gguf_model.read_gguf(path, seq_len)
    c = m.config
    tensors, _ = gguf_model.convert(m, weights)
    vals = {}
    for (kind, block, t, data), (_, _, rows, cols) in zip(tensors, wf.tensor_order(c)):
        vals[(kind, block)] = _values(data, t, rows, cols)
    L = range(c.n_layers)

    def stack(kind, norm=False):
        return np.stack([vals[(kind, b)][0] if norm else vals[(kind, b)] for b in L])

    emb = vals[("token_embd", None)]
    w = Weights(token_embedding_table=emb, rms_att_weight=stack("attn_norm", True), wq=stack("attn_q"),
                wk=stack("attn_k"), wv=stack("attn_v"), wo=stack("attn_output"),
                rms_ffn_weight=stack("ffn_norm", True), w1=stack("ffn_gate"), w2=stack("ffn_down"),
                w3=stack("ffn_up"), rms_final_weight=vals[("output_norm", None)][0], freq_cis_real=None,
                freq_cis_imag=None, wcls=emb if c.shared_classifier else vals[("output", None)])
    return c, w


def generate_text(path, prompt: str, steps: int, weights: str = "auto", model=None) -> dict:
    """Greedy generation from `prompt`, tokenized with the GGUF's own vocabulary the way the kernel
    does (tokenizer_v2), stopping on its EOS/EOT; adds "text" decoded with that vocabulary.
    model: a Transformer from load() to reuse (its KV cache must hold `steps` positions)."""
    from . import tokenizer_v2
    vocab = tokenizer_v2.from_gguf(path)
    model = model or Transformer(load(path, weights, steps))
    ids = vocab.tokenize(prompt)
    out = generate(model, None, prompt, steps, prompt_tokens=ids, stop_ids=vocab.stop_ids())
    prev = ids[-1] if ids else -1
    out["text"] = vocab.detokenize(prev, out["tokens"]).decode("utf-8", errors="replace")
    return out


def generate_tokens(path, prompt_tokens, steps: int, weights: str = "auto") -> dict:
    """Greedy generation from prompt_tokens (BOS included if the model wants one)."""
    model = Transformer(load(path, weights, steps))
    return generate(model, None, "", steps, prompt_tokens=prompt_tokens)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bareflow.model.gguf_reference")
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", help="comma-separated token ids")
    ap.add_argument("--prompt", help="text, tokenized with the GGUF's vocabulary")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--weights", default="auto")
    args = ap.parse_args(argv)
    if args.prompt is not None:
        print(json.dumps(generate_text(args.model, args.prompt, args.steps, args.weights)))
        return 0
    ids = [int(t) for t in args.prompt_tokens.split(",")]
    print(json.dumps(generate_tokens(args.model, ids, args.steps, args.weights)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

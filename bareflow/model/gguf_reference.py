"""The numpy reference (reference.Transformer) on a GGUF model: weights dequantised with gguf.quants.

Activations stay float32 as in the kernel (llama.cpp instead quantises them to 8 bits for its
quantised matmuls, so its tokens may drift from both).  The weights are the values the kernel's
blocks encode: a tensor of a kernel type is dequantised from its own bytes; one the build
converts (WEIGHTS=) is converted exactly as the build does before dequantising, so reference and
kernel see the same numbers.

    python -m bareflow.model.gguf_reference --model F.gguf --prompt "Once upon a time" --steps 48
    python -m bareflow.model.gguf_reference --model F.gguf --check run.log   # a greedy kernel run
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


def check_run(path, log_path, weights: str = "auto", model=None) -> tuple[bool, list[str]]:
    """Compare a greedy kernel run with the reference (reference.check_greedy, teacher-forced).

    log_path: a file holding the run's console (bareflow-hosted's output, a QEMU serial log) with
    its BAREFLOW-RESULT line.  Returns (ok, lines): ok when every step is the reference's greedy
    choice or a near-tie; lines say so, one per disagreement and a summary.  BareflowError when
    the log has no result line, the run sampled (temperature > 0) or its ids do not fit the model.
    model: a Transformer from load() to reuse (its KV cache must hold the run's positions)."""
    from pathlib import Path
    from bareflow.errors import BareflowError
    from bareflow.policy.profile import find_result_line
    from . import tokenizer_v2
    from .reference import check_greedy
    _, run = find_result_line(Path(log_path).read_text(encoding="utf-8", errors="replace"), str(log_path))
    if run.get("temperature", 0) != 0:
        raise BareflowError(f"{log_path}: the run sampled (temperature {run['temperature']}); "
                            "only greedy runs (temperature 0) can be checked token by token")
    prompt, tokens = run["prompt_tokens"], run["tokens"]
    model = model or Transformer(load(path, weights, len(prompt) + len(tokens)))
    vocab = tokenizer_v2.from_gguf(path)
    res = check_greedy(model, prompt, tokens)
    piece = lambda t: repr(vocab.detokenize(-1, [t]).decode("utf-8", errors="replace"))
    lines = [f"step {d['step']}: kernel {d['kernel']} {piece(d['kernel'])}, reference {d['reference']} "
             f"{piece(d['reference'])}, logit gap {d['gap']:.3g} ({d['relative_gap']:.2g} of the largest): "
             + ("near-tie, float32 summation-order noise" if d["near_tie"] else "MISMATCH")
             for d in res["disagreements"]]
    ties = sum(d["near_tie"] for d in res["disagreements"])
    ok = ties == len(res["disagreements"])
    lines.append(f"{res['agree']} of {res['steps']} generated tokens are the reference's greedy choice"
                 + (f", {ties} near-tie(s)" if ties else "")
                 + ("" if ok else f", {len(res['disagreements']) - ties} real mismatch(es)"))
    return ok, lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bareflow.model.gguf_reference")
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", help="comma-separated token ids")
    ap.add_argument("--prompt", help="text, tokenized with the GGUF's vocabulary")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--weights", default="auto")
    ap.add_argument("--check", metavar="LOG", help="a kernel run's console (hosted output or QEMU serial "
                    "log): check each greedy token against the reference, teacher-forced")
    args = ap.parse_args(argv)
    if args.check is not None:
        from bareflow.errors import BareflowError
        try:
            ok, lines = check_run(args.model, args.check, args.weights)
        except (BareflowError, OSError) as exc:
            print(f"gguf_reference: {exc}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0 if ok else 1
    if args.prompt is not None:
        print(json.dumps(generate_text(args.model, args.prompt, args.steps, args.weights)))
        return 0
    ids = [int(t) for t in args.prompt_tokens.split(",")]
    print(json.dumps(generate_tokens(args.model, ids, args.steps, args.weights)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

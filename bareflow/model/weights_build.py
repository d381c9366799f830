"""MODEL=x.gguf and WEIGHTS=: decide at read time, write the weights file at build time.

plan() runs when SCons reads the build: it validates the model (GGUF or llama2.c), works out the
weights file's size without converting anything, and refuses a model that cannot fit FAT16 or
the kernel's memory, naming the sizes.  write() is the build step that converts and writes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import gguf_model
from . import weightsfile as wf
from bareflow.core.variables import parse_int
from bareflow.errors import BareflowError

# The runtime allocates from one arena: the hosted program maps 1 GiB (src/hosted/platform_linux.c)
# and the booted kernel's arena is the largest RAM stretch below 4 GiB; 1 GiB is what both give.
KERNEL_MEMORY = 1 << 30


@dataclass(frozen=True)
class Plan:
    source: str              # the MODEL file
    kind: str                # "gguf" or "llama2.c"
    mode: str                # WEIGHTS mode
    config: wf.WeightsConfig
    size: int                # bytes of the weights file
    types: tuple = ()        # ((kind, block, ggml_type), ...) as the file will hold them


def _seq_cap(text):
    if not text:
        return None
    return parse_int(text, "SEQ_LEN", 1, 1 << 20, "positions the model is cut to")


def runtime_bytes(cfg: wf.WeightsConfig, positions: int) -> int:
    """Arena bytes besides the weights for a run of `positions` (KV cache, scores, activations)."""
    kv = 2 * cfg.n_layers * positions * cfg.n_kv_heads * cfg.head_dim * 4
    acts = 4 * (4 * cfg.dim + 2 * cfg.hidden_dim + 2 * cfg.n_heads * cfg.head_dim
                + cfg.n_heads * positions + 3 * cfg.vocab_size)
    return kv + acts


def check_memory(source, file_size, cfg: wf.WeightsConfig):
    """Refuse a model whose weights plus a run of cfg.seq_len positions exceed the kernel memory."""
    need = runtime_bytes(cfg, cfg.seq_len)
    if file_size + need > KERNEL_MEMORY:
        raise BareflowError(
            f"MODEL {source}: needs {file_size + need} bytes of kernel memory (weights file {file_size} + "
            f"KV cache and activations for {cfg.seq_len} positions {need}), over the {KERNEL_MEMORY} bytes "
            f"the kernel can use; set SEQ_LEN lower or WEIGHTS=q4_0")


def plan(model, weights, seq_len) -> Plan:
    """Validate MODEL under WEIGHTS/SEQ_LEN; raises BareflowError naming the culprit."""
    mode = weights or "auto"
    if mode not in gguf_model.WEIGHTS_MODES:
        keep = " (auto keeps a GGUF's own F32/F16/Q4_0/Q4_1/Q8_0 matrices; the build cannot quantise " \
               "to Q4_1)" if str(weights).lower() == "q4_1" else ""
        raise BareflowError(f"WEIGHTS={weights!r}: expected one of {', '.join(gguf_model.WEIGHTS_MODES)}{keep}")
    cap = _seq_cap(seq_len)
    if gguf_model.is_gguf(model):
        m = gguf_model.read_gguf(model, cap)
        cfg = m.config
        types = gguf_model.planned_types(m, mode)
        size = wf.layout(cfg, types)[1]
        kind = "gguf"
    else:
        from . import checkpoint as model_mod
        c = model_mod.read_config(model)
        cfg = wf.WeightsConfig(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                               min(c.seq_len, cap) if cap else c.seq_len, c.head_size, c.head_size,
                               10000.0, 1e-5, c.shared_classifier)
        types = {(k, b): wf.TYPES[gguf_model.target_type(k, "F32", cols, "f32" if mode == "auto" else mode)]
                 for k, b, _, cols in wf.tensor_order(cfg)}
        size = wf.layout(cfg, types)[1]
        kind = "llama2.c"
    check_memory(model, size, cfg)
    return Plan(os.path.abspath(model), kind, mode, cfg, size,
                tuple((k, b, t) for (k, b), t in sorted(types.items(), key=lambda e: (e[0][0], e[0][1] or -1))))


# The tensors whose rows each layer streams (tensor kinds of docs/weights-format.md).
_LAYER_TENSORS = {"qkv": ("attn_q", "attn_k", "attn_v"), "attnout": ("attn_output",),
                  "ffn": ("ffn_gate", "ffn_up", "ffn_down")}


def weight_bytes_per_value(p: Plan) -> dict:
    """{layer name: bytes per weight the layer streams, averaged over its tensors and blocks}, for
    the layers whose weights may be quantised (qkv, attnout, ffn, classify, embed), so the policy's
    cost model (checkpoint.layer_costs) counts Q4_1's 0.625 bytes per weight instead of float32's 4.
    Block sizes from weightsfile.BLOCKS (ggml's block layouts)."""
    types = {(k, b): t for k, b, t in p.types}
    if not types:
        return {}
    per = {}
    for layer, kinds in (*_LAYER_TENSORS.items(),
                         ("classify", ("token_embd" if p.config.shared_classifier else "output",)),
                         ("embed", ("token_embd",))):
        sizes = [wf.BLOCKS[t][1] / wf.BLOCKS[t][0] for (k, _), t in types.items() if k in kinds]
        if sizes:
            per[layer] = sum(sizes) / len(sizes)
    return per


def write(p: Plan, out_path) -> str:
    """Convert and write the weights file; returns the one-line summary of what was converted."""
    if p.kind == "gguf":
        m = gguf_model.read_gguf(p.source, p.config.seq_len)
        tensors, summary = gguf_model.convert(m, p.mode)
        cfg = p.config
    else:
        cfg, tensors, summary = gguf_model.llama2c_tensors(p.source, p.mode)
        cfg = gguf_model.with_seq_len(cfg, p.config.seq_len)
    wf.write(out_path, cfg, tensors)
    return summary


def model_config(cfg: wf.WeightsConfig):
    """The llama2.c-shaped ModelConfig the policy's cost model reads."""
    from .checkpoint import ModelConfig
    return ModelConfig(dim=cfg.dim, hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                       n_kv_heads=cfg.n_kv_heads, vocab_size=cfg.vocab_size, seq_len=cfg.seq_len,
                       shared_classifier=cfg.shared_classifier)

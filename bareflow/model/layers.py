"""The nine layer modules: their names, kinds and how often a token calls each.

The order of LAYER_NAMES is the order of calls within a token and the order of entries in
the policy table (docs/policy-table.md).
"""
import re

from bareflow.errors import BareflowError

LAYER_NAMES = ("embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler")

# What each layer does, for policies that care about the shape of the work rather than its
# size (e.g. attention cost grows with the position, a matmul's does not).
LAYER_KINDS = {
    "embed": "lookup",
    "rmsnorm": "norm",
    "qkv": "matmul",
    "rope": "elementwise",
    "attn": "attention",
    "attnout": "matmul",
    "ffn": "matmul",
    "classify": "matmul",
    "sampler": "sampling",
}


def calls_per_token(n_layers: int) -> dict[str, int]:
    """How often the kernel calls each layer per position (the shared constants)."""
    return {"embed": 1, "rmsnorm": 2 * n_layers + 1, "qkv": n_layers, "rope": n_layers,
            "attn": n_layers, "attnout": n_layers, "ffn": n_layers, "classify": 1, "sampler": 1}


# A layer name as the on-disk formats store it (module file, policy table, profile): 1-15
# characters of [a-z0-9_] in a NUL-padded 16-byte field.
LAYER_NAME = re.compile(r"[a-z0-9_]{1,15}\Z")


def decode_layer_name(field: bytes, index: int, seen, fail) -> tuple:
    """(name, where) of entry `index`'s 16-byte layer field; `fail(problem)` is called (and must
    raise) for a name that breaks LAYER_NAME, is not NUL-padded, or is already in `seen`."""
    name = field.rstrip(b"\0")
    text = name.decode("ascii", errors="replace")
    where = f"entry {index} ({text!r})"
    if b"\0" in name or not LAYER_NAME.match(text):
        fail(f"{where}: field 'layer' must be 1-15 of [a-z0-9_], NUL-padded")
    if text in seen:
        fail(f"{where}: field 'layer' repeats layer {text!r}")
    return text, where


def check_layer_name(name, what) -> bytes:
    """The 16-byte NUL-padded field for `name`; BareflowError naming `what` if the name is invalid."""
    if not isinstance(name, str) or not LAYER_NAME.match(name):
        raise BareflowError(f"{what}: layer name {name!r} must be 1-15 of [a-z0-9_]")
    return name.encode("ascii").ljust(16, b"\0")

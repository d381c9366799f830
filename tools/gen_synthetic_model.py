#!/usr/bin/env python3
"""Write the deterministic synthetic model and tokenizer (bareflow/synthetic.py).

    python tools/gen_synthetic_model.py --out-model build/model/synthetic.bin \
        --out-tokenizer build/model/synthetic_tok.bin

Same arguments, same bytes: nothing depends on time, environment or hash order.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any directory

from bareflow.errors import BareflowError  # noqa: E402
from bareflow.model import synthetic  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-model", required=True, help="checkpoint to write (llama2.c format)")
    ap.add_argument("--out-tokenizer", required=True, help="tokenizer to write (llama2.c format)")
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=synthetic.SEED,
                    help="weight seed (default %(default)#x; only the default is margin-checked)")
    args = ap.parse_args(argv)
    try:
        s = synthetic.write(args.out_model, args.out_tokenizer, seed=args.seed)
    except (BareflowError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    c = s.config
    print(f"wrote {args.out_model} ({Path(args.out_model).stat().st_size} bytes: dim={c.dim} "
          f"hidden_dim={c.hidden_dim} n_layers={c.n_layers} n_heads={c.n_heads} "
          f"n_kv_heads={c.n_kv_heads} vocab_size={c.vocab_size} (separate classifier) "
          f"seq_len={c.seq_len}) and {args.out_tokenizer} "
          f"({Path(args.out_tokenizer).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""SmolLM2 side by side: BareFlow's hosted greedy text beside llama.cpp's greedy text.

    python tools/report_llamacpp.py [--model F.gguf] [--steps 48] [--work DIR]

For each prompt of tests/test_models_smollm2.py, on the same GGUF (default: the cached
SmolLM2-135M-Instruct Q4_1) and the same number of generated tokens, prints both texts and the
number of leading generated tokens on which they agree.  Prints figures, asserts nothing: the two
need not be equal, because llama.cpp quantises activations to 8 bits (Q8_1/Q8_0) for quantised
matmuls while BareFlow keeps float activations (../shared/notes/REAL-MODELS.md).

The llama.cpp side is tools/llamacpp_greedy.cpp: our small program on llama.cpp's API making
llama-simple's calls (the same tokenisation, the prompt as one batch, the greedy sampler, stop at
end-of-generation) but with one thread and printing token ids.  llama-simple itself cannot be used
here: it has no thread option, runs 4 busy-waiting threads (minutes per token on a shared 2-core
machine), and prints only text, from which ids could only be guessed.  So the agreement count is
exact: the number of leading generated ids that are equal (the prompt ids are checked equal too).

llama.cpp is built on first use by tools/llamacpp.py; BareFlow by scons (one hosted build, the
image rebuilt per prompt, as the SmolLM2 tests do).
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import fetch_models  # noqa: E402
import llamacpp  # noqa: E402
from benchutil import result_of, scons  # noqa: E402

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]    # tests/test_models_smollm2.py


def bareflow_generate(build: Path, model: Path, prompt: str, steps: int) -> dict:
    """Build the image for `prompt` and run it hosted; the BAREFLOW-RESULT JSON."""
    scons(build, "image", "hosted", "-j2", f"MODEL={model}", f"PROMPT={prompt}", f"STEPS={steps}")
    out = subprocess.run([str(build / "bareflow-hosted"), str(build / "bareflow.img")], capture_output=True,
                         text=True, check=True).stdout
    return result_of(out)


def agreeing(a, b) -> int:
    """Length of the common prefix of two id lists."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(fetch_models.smollm2_path()))
    ap.add_argument("--steps", type=int, default=48, help="BareFlow's STEPS (positions, prompt included)")
    ap.add_argument("--work", default="", help="keep BareFlow's build here (default: a temporary directory)")
    args = ap.parse_args(argv)
    model = Path(args.model)
    if not model.is_file():
        print(f"report_llamacpp: error: {model} not found (tools/setup.sh fetches SmolLM2 when online)",
              file=sys.stderr)
        return 1
    try:
        llamacpp.greedy_tool()
    except llamacpp.LlamaCppError as e:
        print(f"report_llamacpp: error: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bareflow-report-") as tmp:
        build = Path(args.work or tmp)
        print(f"model {model.name}; BareFlow hosted STEPS={args.steps} vs llama.cpp {llamacpp.VERSION} "
              f"(tools/llamacpp_greedy.cpp: greedy, 1 thread), same number of generated tokens\n")
        for prompt in PROMPTS:
            bf = bareflow_generate(build, model, prompt, args.steps)
            n = len(bf["tokens"])
            ref_prompt, ref_ids, ref_text = llamacpp.greedy(model, prompt, n)
            same_prompt = "equal" if ref_prompt == bf["prompt_tokens"] else f"DIFFERENT: llama.cpp {ref_prompt}"
            print(f"prompt {prompt!r}: ids {bf['prompt_tokens']} ({same_prompt}); {n} generated tokens")
            print(f"  BareFlow : {bf['text']!r}")
            print(f"  llama.cpp: {ref_text.decode('utf-8', 'replace')!r}")
            agree = agreeing(bf["tokens"], ref_ids)
            where = "" if agree == min(n, len(ref_ids)) else \
                f" (then BareFlow {bf['tokens'][agree]} vs llama.cpp {ref_ids[agree]})"
            print(f"  agree on the first {agree} of {n} generated tokens{where}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

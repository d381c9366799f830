"""Bad input at every step of `scons image` gives one clear error naming the culprit, and leaves
no image behind that looks good."""
import os
import struct
import textwrap

import pytest

from buildutil import ROOT, scons

PLUGIN = '''
from bareflow import hookimpl
from bareflow.policy.api import Decision, Policy

@hookimpl
def bareflow_module_cflags(module, cflags):
    if module == "rmsnorm" and "{mode}" == "broken-c":
        cflags += ["-include", "{broken_header}"]
    if module == "ffn" and "{mode}" == "unresolved":
        cflags += ["-Dexpf=bf_missing_expf"]

@hookimpl
def bareflow_register_policies():
    def decide(layer, variables):
        return Decision(ladder=["O0", "O2"], calls=[-5 if layer.name == "qkv" else 10])
    return [Policy("negative", "thresholds out of range", decide)]

@hookimpl
def bareflow_configure(variables):
    if "{mode}" == "raises":
        raise RuntimeError("the configure hook exploded")
'''


def _plugin(tmp_path, mode):
    (tmp_path / "broken.h").write_text("this is not C at all;\n")
    (tmp_path / "badplugin.py").write_text(PLUGIN.format(mode=mode, broken_header=tmp_path / "broken.h"))
    return {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _fails(build, *args, env=None):
    proc = scons(build, "image", *args, check=False, env=env)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not (build / "bareflow.img").exists(), "a failed build left an image behind"
    return proc.stdout


def test_c_that_does_not_compile(tmp_path):
    out = _fails(tmp_path / "b", "PLUGINS=badplugin", env=_plugin(tmp_path, "broken-c"))
    assert "compiling module rmsnorm" in out and "modules/rmsnorm.c" in out
    assert "broken.h" in out                                 # clang's own diagnostic is shown


def test_unresolvable_symbol_lists_symbol_and_module(tmp_path):
    out = _fails(tmp_path / "b", "PLUGINS=badplugin", env=_plugin(tmp_path, "unresolved"))
    assert "bf_missing_expf: needed by module:ffn" in out


def test_policy_answer_out_of_range_names_plugin_and_layer(tmp_path):
    out = _fails(tmp_path / "b", "PLUGINS=badplugin", "POLICY=negative", env=_plugin(tmp_path, "none"))
    assert "badplugin" in out and "qkv" in out and "calls" in out
    assert "Traceback" not in out


def test_plugin_that_raises_is_named_with_its_hook(tmp_path):
    out = _fails(tmp_path / "b", "PLUGINS=badplugin", env=_plugin(tmp_path, "raises"))
    assert "badplugin" in out and "bareflow_configure" in out and "the configure hook exploded" in out


def test_unknown_policy_lists_the_known_ones(tmp_path):
    out = _fails(tmp_path / "b", "POLICY=nosuch")
    assert "nosuch" in out and "tiered" in out and "fixed" in out


def test_unknown_tier_and_isa(tmp_path):
    assert "O7" in _fails(tmp_path / "b", "POLICY=fixed", "TIER=O7")
    assert "avx9000" in _fails(tmp_path / "c", "ISA=avx9000")


def test_steps_out_of_range(tmp_path):
    out = _fails(tmp_path / "b", "STEPS=100000")
    assert "STEPS" in out


def test_corrupt_checkpoint_is_rejected_before_anything_is_written(tmp_path):
    from buildutil import stories
    model, tok = stories()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(model.read_bytes()[:-100])
    build = tmp_path / "b"
    out = _fails(build, f"MODEL={truncated}", f"TOKENIZER={tok}")
    assert "truncated.bin" in out and "expected 1056540 bytes" in out
    assert not (build / "modules").exists() and not (build / "bc").exists()


def test_payload_too_big_for_fat16(tmp_path):
    """A consistent checkpoint of ~2.3 GiB (sparse on disk) cannot fit a FAT16 partition."""
    from buildutil import stories
    _, tok = stories()
    dim, hidden, n_layers, heads, kv, vocab, seq = 512, 1376, 192, 8, 8, 512, 512
    head = dim // heads
    floats = (vocab * dim + n_layers * dim * 2 + n_layers * dim * dim * 4 + n_layers * hidden * dim * 3
              + dim + seq * head)
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, n_layers, heads, kv, vocab, seq))
        f.truncate(28 + 4 * floats)
    assert huge.stat().st_size > 2 << 30
    out = _fails(tmp_path / "b", f"MODEL={huge}", f"TOKENIZER={tok}")
    assert "FAT16" in out and "MODEL.BIN" in out


def test_model_and_tokenizer_only_together(tmp_path):
    """Either one alone is refused: a lone TOKENIZER must not be silently replaced by the synthetic one."""
    from buildutil import stories
    model, _ = stories()
    given = tmp_path / "given.bin"
    given.write_bytes(bytes(64))
    assert "TOKENIZER is set but MODEL is not" in _fails(tmp_path / "b", f"TOKENIZER={given}")
    assert f"MODEL {model} is a llama2.c checkpoint, which holds no vocabulary: give its tokenizer too " \
        "(TOKENIZER=path)" in _fails(tmp_path / "c", f"MODEL={model}")


def test_garbage_model_is_named_as_neither_format_before_anything_is_written(tmp_path):
    """The model's kind comes from its bytes: garbage is not a llama2.c checkpoint missing TOKENIZER."""
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(bytes(range(256)) * 4)
    build = tmp_path / "b"
    out = _fails(build, f"MODEL={garbage}")
    assert f"bareflow: error: MODEL {garbage}: neither a GGUF file (no 'GGUF' magic) nor a llama2.c " \
        "checkpoint" in out and "TOKENIZER is not" not in out
    assert not (build / "model").exists() and not (build / "bc").exists()


def test_unusable_build_and_cache_directories_are_one_line_errors(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    proc = scons(a_file / "build", "image", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout, proc.stdout[-2000:]
    assert f"bareflow: error: BUILD_DIR={a_file / 'build'}: cannot create the build directory" in proc.stdout
    proc = scons(tmp_path / "build", "image", f"CACHE_DIR={a_file / 'cache'}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout, proc.stdout[-2000:]
    assert f"bareflow: error: CACHE_DIR={a_file / 'cache'}: cannot use it as the build cache" in proc.stdout
    assert not (tmp_path / "build" / "bareflow.img").exists()


def test_a_misspelled_target_is_named_with_the_right_one(tmp_path):
    proc = scons(tmp_path / "b", "imgae", check=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "bareflow: error: unknown target 'imgae': did you mean 'image'?" in proc.stdout
    assert not (tmp_path / "b" / "bareflow.img").exists()

"""Issue 8, kind 4: every sampling value either samples correctly or is refused with a message.

The kind: a temperature or topp whose float32 is denormal or rounds to zero (1e-38 made the
kernel divide logits into inf and sample <unk>, and the numpy reference raise IndexError),
NaN/inf spellings, values past the range, and tiny-but-normal temperatures whose logits /
temperature overflows (the sampler's limit there is the argmax).  The build (bootconfig), the
kernel (an edited /BAREFLOW.CFG) and the reference agree, and the result line reports the value
actually used.
"""
import struct

import numpy as np
import pytest

from bareflow.image import bootconfig

from bareflow.model import reference
from bareflow.errors import BareflowError
from test_runtime_hosted import (DATA, base_files, config, expect_panic, needs_mtools, run_files, simple_policy,
                                 synthetic_model)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


REFUSED_TEMPERATURES = ["1e-38", "1e-45", "5e-324", "1e-400", "nan", "NaN", "inf", "-inf", "1e400", "-1e-38",
                        "2.0000001", "-0.5", "3"]
REFUSED_TOPP = ["0", "1e-40", "1e-46", "nan", "inf", "-0.1", "1.0000001"]


@pytest.mark.parametrize("text", REFUSED_TEMPERATURES)
def test_build_refuses_temperature(text):
    with pytest.raises(BareflowError, match="TEMPERATURE="):
        bootconfig.render({"temperature": text}, 512)


@pytest.mark.parametrize("text", REFUSED_TOPP)
def test_build_refuses_topp(text):
    with pytest.raises(BareflowError, match="TOPP="):
        bootconfig.render({"topp": text}, 512)


@pytest.mark.parametrize("text, written", [("2e-38", "2e-38"), ("1.17549435e-38", "1.1754943e-38"), ("0", "0"),
                                           ("2", "2"), ("0.8", "0.8"), ("1e-06", "1e-06")])
def test_build_accepts_normal_float32_temperatures(text, written):
    cfg = bootconfig.render({"temperature": text}, 512).decode()
    assert f"temperature = {written}\n" in cfg


def test_reference_refuses_denormal_instead_of_index_error():
    m, t = synthetic_model()
    with pytest.raises(BareflowError, match="smallest normal float32"):
        reference.generate(m, t, "Once upon a time", 12, 1e-38, 0.9, 1)


@pytest.mark.parametrize("topp", [0.9, 1.0])
def test_reference_tiny_normal_temperature_is_the_argmax(topp):
    m, t = synthetic_model()
    greedy = reference.generate(m, t, "Once upon a time", 16, 0.0, topp, 3)
    tiny = reference.generate(m, t, "Once upon a time", 16, 2e-38, topp, 3)
    assert tiny["tokens"] == greedy["tokens"]


def test_reference_sampler_never_sees_nan():
    logits = np.array([3.0e30, 1.0, -2.0], dtype=np.float32)
    assert reference.sample_topp(logits, 1e-8, 0.9, 0.99) == 0
    assert reference.sample_topp(-logits, 1e-8, 1.0, 0.99) == 2
    assert reference.sample_topp(np.array([-3e30, -3.1e30], dtype=np.float32), 1e-9, 1.0, 0.5) == 0


@needs_mtools
@pytest.mark.parametrize("text, fragment", [
    ("1e-38", "temperature = 1e-38 is below 1.17549435e-38, the smallest normal float32"),
    ("1e-45", "temperature = 1e-45 is below"),
    ("nan", "temperature = 'nan' is not a decimal number"),
    ("inf", "temperature = 'inf' is not a decimal number"),
    ("3", "temperature = 3 out of range 0..2"),
])
def test_kernel_refuses_edited_temperature(tmp_path, text, fragment):
    run = expect_panic(tmp_path, base_files(cfg=config(temperature=text)), fragment)
    assert "BAREFLOW.CFG line 4" in run.panic


@needs_mtools
def test_kernel_refuses_denormal_topp(tmp_path):
    expect_panic(tmp_path, base_files(cfg=config(temperature="1", topp="1e-40")),
                 "BAREFLOW.CFG line 5: topp = 1e-40 is below 1.17549435e-38")


def model_files():
    if (DATA / "stories260K.bin").exists() and (DATA / "tok512.bin").exists():
        return DATA / "stories260K.bin", DATA / "tok512.bin"
    return synthetic_model()


@needs_mtools
@pytest.mark.parametrize("temperature, topp", [("2e-38", "0.9"), ("1.2345678e-05", "1"), ("2", "0.95")])
def test_kernel_samples_every_accepted_temperature_and_reports_it(tmp_path, temperature, topp):
    """The issue's stories260K run at the smallest temperatures: real tokens (the reference's,
    no <unk> flood), and the result line's temperature is the float32 the sampler used."""
    model = model_files()
    run = run_files(tmp_path, base_files(cfg=config(steps=40, temperature=temperature, topp=topp, seed=5),
                                         model=model, policy=simple_policy("O2")))
    assert run.code == 0, run.out[-2000:]
    r = run.result
    assert f32(r["temperature"]) == f32(float(temperature)) and r["temperature"] != 0
    ref = reference.generate(*model, "Once upon a time", 40, float(temperature), float(topp), 5)
    assert r["tokens"] == ref["tokens"]
    assert r["tokens"].count(0) < len(r["tokens"]) // 2      # id 0 is <unk>

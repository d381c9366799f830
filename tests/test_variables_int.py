"""The one integer reader for build variables (bareflow.core.variables.parse_int, kind "int"):
the range is enforced at both ends, and every refusal names the variable, the value as typed and
the range.  Used by SPLIT_CYCLES, JIT_COMPILE_CYCLES, PGO_HOT_CALLS, JIT_TIMEOUT_MS, SMP, and the
whole numbers of /BAREFLOW.CFG and the model (STEPS, SEED, CORES, SEQ_LEN)."""
import pytest

from bareflow.boot import qemu
from bareflow.core.variables import Variable, parse_int, span
from bareflow.errors import BareflowError
from bareflow.policy import builtin, cores, jit


def test_accepts_whole_numbers_in_range_both_ends_included():
    assert parse_int("0", "N", 0, 10) == 0 and parse_int(" 10 ", "N", 0, 10) == 10
    assert parse_int("+7", "N", 0, 10) == 7 and parse_int(7, "N", 0, 10) == 7
    assert parse_int("-3", "N", -5, 5) == -3


@pytest.mark.parametrize("text", ["11", "-1", "x", "", "1.5", "1e3", "0x5", "1_0", "٣", "5 5", True])
def test_refusals_name_variable_value_and_range(text):
    with pytest.raises(BareflowError) as err:
        parse_int(text, "MY_COUNT", 0, 10, "things per call")
    assert str(err.value) == f"MY_COUNT={text!r}: expected an integer in 0..10 (things per call)"


def test_large_bounds_are_written_as_powers_of_ten():
    assert span(10**9) == "10^9" and span(10**15) == "10^15" and span(1000) == "1000"
    assert span(3600000) == "3600000" and span(2**31 - 1) == "2147483647"
    with pytest.raises(BareflowError, match=r"^N='-2': expected an integer in 0\.\.10\^9$"):
        parse_int("-2", "N", 0, 10**9)


def test_int_variables_convert_and_check_their_declaration():
    var = Variable("MY_COUNT", "help", "3", kind="int", low=1, high=9)
    var.check_declaration("plugin p")
    assert var.convert("9") == 9
    with pytest.raises(BareflowError, match=r"^MY_COUNT='10': expected an integer in 1\.\.9$"):
        var.convert("10")
    for low, high in ((None, 9), (5, 4), (1.0, 9), (True, 9)):
        with pytest.raises(BareflowError, match=r"plugin p: variable MY_COUNT: an int needs whole numbers"):
            Variable("MY_COUNT", "help", "3", kind="int", low=low, high=high).check_declaration("plugin p")


@pytest.mark.parametrize("read, name, text, message", [
    (cores.split_cycles, "SPLIT_CYCLES", "lots",
     r"SPLIT_CYCLES='lots': expected an integer in 0\.\.10\^9 \(cycles one split point costs per extra core; "
     r"0 = never cap\)"),
    (cores.split_cycles, "SPLIT_CYCLES", str(10**9 + 1), r"SPLIT_CYCLES='1000000001': expected an integer in 0\.\.10\^9"),
    (jit.compile_cycles, "JIT_COMPILE_CYCLES", "0",
     r"JIT_COMPILE_CYCLES='0': expected an integer in 1\.\.10\^15 \(cycles one run-time compile costs\)"),
    (builtin._hot_calls, "PGO_HOT_CALLS", "-4", r"PGO_HOT_CALLS='-4': expected an integer in 1\.\.10\^9"),
])
def test_the_policies_variables_use_it(read, name, text, message):
    with pytest.raises(BareflowError, match=message):
        read({name: text})


def test_the_declared_variables_are_ints_with_the_readers_ranges():
    from bareflow.kernel import jit as jit_plugin
    declared = {v.name: v for v in (*builtin.bareflow_register_variables(), *jit_plugin.bareflow_register_variables(),
                                    *qemu.bareflow_register_variables())}
    ranges = {"SPLIT_CYCLES": (0, 10**9), "JIT_COMPILE_CYCLES": (1, 10**15), "PGO_HOT_CALLS": (1, 10**9),
              "JIT_TIMEOUT_MS": (1, 3600000), "SMP": (1, 64)}
    for name, (low, high) in ranges.items():
        var = declared[name]
        assert (var.kind, var.low, var.high) == ("int", low, high), name
        assert var.convert(var.default) == int(var.default)
    with pytest.raises(BareflowError, match=r"SMP='65': expected an integer in 1\.\.64 \(virtual CPUs\)"):
        qemu.smp_args("65")


def test_the_boot_and_model_numbers_use_it_too():
    from bareflow.image import bootconfig
    from bareflow.model import weights_build
    assert bootconfig.check_steps(" 512 ", 512) == 512 and bootconfig.check_cores("64") == "64"
    with pytest.raises(BareflowError, match=r"^STEPS='513': expected an integer in 1\.\.512 \(positions, the "
                                            r"prompt's included; 512 is the model's sequence length, seq_len, or "
                                            r"SEQ_LEN when that is lower\)$"):
        bootconfig.check_steps("513", 512)
    with pytest.raises(BareflowError, match=r"^CORES='1_0': expected all \(every core that starts\) or an integer "
                                            r"in 1\.\.64$"):
        bootconfig.check_cores("1_0")
    with pytest.raises(BareflowError, match=r"^SEED='-1': expected an integer in 0\.\.18446744073709551615$"):
        bootconfig.render({"seed": "-1"}, 256)
    assert weights_build._seq_cap("") is None and weights_build._seq_cap("100") == 100
    with pytest.raises(BareflowError, match=r"^SEQ_LEN='lots': expected an integer in 1\.\.1048576 \(positions"):
        weights_build._seq_cap("lots")


def test_weights_q4_1_points_at_auto():
    # A Q4_1 GGUF's user asks to keep Q4_1 by name; auto is how (the build cannot make Q4_1).
    from bareflow.model import weights_build
    with pytest.raises(BareflowError, match=r"^WEIGHTS='q4_1': expected one of auto, .*\(auto keeps a "
                                            r"GGUF's own .*Q4_1"):
        weights_build.plan("unused.gguf", "q4_1", "")


def test_a_decimal_variable_that_is_not_a_number_says_what_is_expected():
    from bareflow.image import bootconfig
    with pytest.raises(BareflowError, match=r"^TEMPERATURE='warm': not a decimal number; expected one in "
                                            r"\[0\.0, 2\.0\], e\.g\. 0\.8$"):
        bootconfig.render({"temperature": "warm"}, 256)

"""src/libc/stdio: snprintf/vsnprintf against Python's %-formatting (which follows C).

The real snprintf.c and vsnprintf.c are compiled natively with the names renamed to
bft_snprintf/bft_vsnprintf, and bft_snprintf is called variadically through ctypes.
Where C and Python legitimately differ (precision disabling the 0 flag, "%.0d" of 0) the
test states the C standard's answer directly.
"""
import ctypes
import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LIBC = REPO / "src" / "libc"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("libcstdio") / "libbfstdio.so"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu", "-shared",
           "-fPIC", "-O2", "-ffreestanding", "-fno-sanitize=all", f"-I{LIBC / 'include'}",
           "-Dsnprintf=bft_snprintf", "-Dvsnprintf=bft_vsnprintf",
           str(LIBC / "stdio" / "snprintf.c"), str(LIBC / "stdio" / "vsnprintf.c"),
           "-o", str(out)]
    subprocess.run(cmd, check=True)
    L = ctypes.CDLL(str(out))
    L.bft_snprintf.restype = ctypes.c_int
    return L


def fmt(lib, f, *args, size=512):
    b = ctypes.create_string_buffer(b"\xee" * size, size)
    n = lib.bft_snprintf(b, ctypes.c_size_t(size), f.encode(), *args)
    s = b.raw.split(b"\0", 1)[0].decode("latin-1")
    assert n == len(s), (f, n, s)
    return s


FLAGS = ["", "-", "0", "+", " ", "-+", "0 ", "+0"]
WIDTHS = ["", "1", "6", "13"]


def test_signed_ints(lib):
    r = np.random.default_rng(8)
    vals = [0, 1, -1, 42, -42, 2**31 - 1, -2**31] + r.integers(-2**31, 2**31, 30).tolist()
    n = 0
    for flag, width, prec, conv in itertools.product(FLAGS, WIDTHS, ["", ".0", ".4"], "di"):
        if prec and "0" in flag:
            continue                      # C ignores 0 with a precision; Python does not
        spec = f"%{flag}{width}{prec}{conv}"
        for v in vals:
            if prec == ".0" and v == 0:
                continue                  # C prints no digits; Python prints "0"
            assert fmt(lib, spec, ctypes.c_int(v)) == spec % v, (spec, v)
            n += 1
    assert n > 3000


@pytest.mark.parametrize("mod,ctype,bits", [("l", ctypes.c_long, 64), ("ll", ctypes.c_longlong, 64),
                                            ("z", ctypes.c_size_t, 64), ("", ctypes.c_uint, 32)])
def test_lengths_and_unsigned(lib, mod, ctype, bits):
    r = np.random.default_rng(9)
    unsigned = [0, 1, 2**bits - 1, 2**(bits - 1)] + [int(x) for x in r.integers(0, 2**63, 40, dtype=np.uint64)]
    unsigned = [u % 2**bits for u in unsigned]
    for flag, width, conv in itertools.product(["", "-", "0"], WIDTHS + ["20"], "uxX"):
        spec = f"%{flag}{width}{mod}{conv}"
        pyspec = spec.replace(mod, "") if mod else spec
        for u in unsigned:
            assert fmt(lib, spec, ctype(u)) == pyspec % u, (spec, u)
    if ctype is not ctypes.c_uint and ctype is not ctypes.c_size_t:
        for v in (-2**63, -1, 2**63 - 1, -123456789012):
            assert fmt(lib, f"%{mod}d", ctype(v)) == "%d" % v


def test_narrow_lengths_and_unsigned_wrap(lib):
    assert fmt(lib, "%hhd %hd %hhu %hu", ctypes.c_int(300), ctypes.c_int(70000),
               ctypes.c_int(-1), ctypes.c_int(-1)) == "44 4464 255 65535"
    assert fmt(lib, "%u %x", ctypes.c_int(-1), ctypes.c_int(-2)) == "4294967295 fffffffe"


def test_c_s_p_percent(lib):
    assert fmt(lib, "%c|%5c|%-3c|", ctypes.c_int(ord("a")), ctypes.c_int(ord("b")),
               ctypes.c_int(ord("c"))) == "%c|%5c|%-3c|" % ("a", "b", "c")
    for spec in ["%s", "%10s", "%-10s|", "%.3s", "%8.2s", "%-8.0s|"]:
        for s in ["", "hi", "hello world"]:
            assert fmt(lib, spec, s.encode()) == spec % s
    assert fmt(lib, "%s", ctypes.c_char_p(None)) == "(null)"
    for p in (0, 0x1000, 0xdeadbeefcafe, 2**64 - 1):
        assert fmt(lib, "%p", ctypes.c_void_p(p)) == "0x%x" % p
    assert fmt(lib, "%20p|%-16p|", ctypes.c_void_p(0xabc), ctypes.c_void_p(1)) == "%20s|%-16s|" % ("0xabc", "0x1")
    assert fmt(lib, "100%% %d%%", ctypes.c_int(5)) == "100% 5%"
    assert fmt(lib, "%*d|%-*d|%.*f", ctypes.c_int(6), ctypes.c_int(7), ctypes.c_int(-4),
               ctypes.c_int(8), ctypes.c_int(2), ctypes.c_double(3.14159)) == "     7|8   |3.14"


def test_unknown_conversion_is_copied(lib):
    assert fmt(lib, "a%qb") == "a%qb"
    assert fmt(lib, "end%") == "end%"
    assert fmt(lib, "%-5k") == "%-5k"


def test_float_random(lib):
    r = np.random.default_rng(10)
    vals = np.concatenate([r.uniform(-1e3, 1e3, 3000), np.exp(r.uniform(-30, 41.4, 3000)),
                           -np.exp(r.uniform(-30, 41.4, 1000)),
                           r.integers(-10**6, 10**6, 1000) / 2**r.integers(1, 8, 1000)])
    specs = ["%f", "%.0f", "%.1f", "%.2f", "%.3f", "%.6f", "%.9f", "%.20f", "%12.3f", "%-12.2f|",
             "%012.4f", "%+.2f", "% .1f"]
    n = 0
    for v in vals.tolist():
        for spec in specs:
            assert fmt(lib, spec, ctypes.c_double(v)) == spec % v, (spec, repr(v))
            n += 1
    assert n > 100000


def test_float_halfway_and_edges(lib):
    cases = [0.5, 1.5, 2.5, -2.5, 0.125, 0.375, 1e18, -1e18, 123456789012345678.0, 2.0**64,
             2.0**100, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 0.0, -0.0,
             -0.0004, 9.9999995, 0.9999999, 1e-7, 4.35, 2.675, 1e15 + 0.3, 0.045]
    for v in cases:
        for spec in ["%f", "%.0f", "%.1f", "%.2f", "%.6f", "%.20f", "%010.3f"]:
            assert fmt(lib, spec, ctypes.c_double(v), size=1024) == spec % v, (spec, v)


def test_float_nan_inf(lib):
    for v, spec in itertools.product([math.inf, -math.inf, math.nan],
                                     ["%f", "%8f", "%-8f|", "%+f", "% f", "%+6.2f"]):
        assert fmt(lib, spec, ctypes.c_double(v)) == spec % v, (spec, v)
    # Python zero-pads "inf"; C implementations pad non-finite values with spaces.
    assert fmt(lib, "%08.2f|%07f", ctypes.c_double(math.inf), ctypes.c_double(-math.inf)) == "     inf|   -inf"
    assert fmt(lib, "%f", ctypes.c_double(-math.nan)) == "-nan"   # sign bit shown, as glibc


def test_float_precision_clamped_to_20(lib):
    assert fmt(lib, "%.25f", ctypes.c_double(0.1)) == "%.20f" % 0.1


def test_truncation_and_return_value(lib):
    full = "value=12345 name=bareflow"
    for size in range(0, len(full) + 3):
        b = ctypes.create_string_buffer(b"\xee" * (size + 4), size + 4)
        n = lib.bft_snprintf(b, ctypes.c_size_t(size), b"value=%d name=%s",
                             ctypes.c_int(12345), b"bareflow")
        assert n == len(full)
        if size == 0:
            assert b.raw == b"\xee" * 4                       # nothing written at all
        else:
            keep = min(size - 1, len(full))
            assert b.raw[:keep + 1] == full[:keep].encode() + b"\0"
            assert b.raw[size:] == b"\xee" * 4               # never past the bound
    assert lib.bft_snprintf(None, ctypes.c_size_t(0), b"%d", ctypes.c_int(-777)) == 4

"""src/libc/string against Python's bytes semantics, on random and edge-case inputs.

Compiled natively from the real source files with every public name renamed to
bft_<name> (-D) so the host libc cannot interpose; -ffreestanding as in the kernel build.
"""
import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LIBC = REPO / "src" / "libc"
NAMES = ["memcpy", "memmove", "memset", "memcmp", "strlen", "strcmp", "strncmp", "strchr"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("libcstring") / "libbfstring.so"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu", "-shared",
           "-fPIC", "-O2", "-ffreestanding", "-fno-sanitize=all", f"-I{LIBC / 'include'}",
           *[f"-D{n}=bft_{n}" for n in NAMES],
           *[str(LIBC / "string" / f"{n}.c") for n in NAMES], "-o", str(out)]
    subprocess.run(cmd, check=True)
    L = ctypes.CDLL(str(out))
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    sig = {"memcpy": (vp, [vp, vp, sz]), "memmove": (vp, [vp, vp, sz]),
           "memset": (vp, [vp, ctypes.c_int, sz]), "memcmp": (ctypes.c_int, [vp, vp, sz]),
           "strlen": (sz, [cp]), "strcmp": (ctypes.c_int, [cp, cp]),
           "strncmp": (ctypes.c_int, [cp, cp, sz]), "strchr": (vp, [cp, ctypes.c_int])}
    for n, (res, args) in sig.items():
        f = getattr(L, "bft_" + n)
        f.restype, f.argtypes = res, args
    return L


def sign(v):
    return (v > 0) - (v < 0)


def buf(data):
    b = ctypes.create_string_buffer(bytes(data), len(data))
    return b, ctypes.addressof(b)


def test_memcpy(lib):
    r = np.random.default_rng(1)
    for n in list(range(0, 70)) + [255, 1000, 4097]:
        src = r.integers(0, 256, n, dtype=np.uint8).tobytes()
        s, sa = buf(src)
        d, da = buf(b"\xaa" * (n + 8))
        assert lib.bft_memcpy(da + 3, sa, n) == da + 3
        assert d.raw == b"\xaa" * 3 + src + b"\xaa" * 5


@pytest.mark.parametrize("shift", [-17, -8, -1, 0, 1, 3, 8, 33])
def test_memmove_overlap(lib, shift):
    r = np.random.default_rng(2)
    for n in (0, 1, 7, 64, 300):
        data = bytearray(r.integers(0, 256, n + 80, dtype=np.uint8).tobytes())
        b, a = buf(data)
        src, dst = 40, 40 + shift
        assert lib.bft_memmove(a + dst, a + src, n) == a + dst
        want = bytearray(data)
        want[dst:dst + n] = data[src:src + n]
        assert b.raw == bytes(want)


def test_memset(lib):
    for n in (0, 1, 15, 16, 17, 1000):
        for c in (0, 0x41, 0xff, 0x1ff, -1):
            b, a = buf(b"\x11" * (n + 2))
            assert lib.bft_memset(a + 1, c, n) == a + 1
            assert b.raw == b"\x11" + bytes([c & 0xff]) * n + b"\x11"


def test_memcmp(lib):
    r = np.random.default_rng(3)
    for _ in range(2000):
        n = int(r.integers(0, 40))
        x = r.integers(0, 256, n, dtype=np.uint8).tobytes()
        y = bytearray(x)
        if n and r.random() < 0.8:
            y[int(r.integers(0, n))] = int(r.integers(0, 256))
        xb, xa = buf(x)    # keep the buffers alive while C reads them
        yb, ya = buf(bytes(y))
        assert sign(lib.bft_memcmp(xa, ya, n)) == sign((x > bytes(y)) - (x < bytes(y)))
    # bytes compare as unsigned: 0x80 > 0x7f
    pb, p = buf(b"\x80")
    qb, q = buf(b"\x7f")
    assert lib.bft_memcmp(p, q, 1) > 0


def rand_str(r, alphabet=b"ab\x7f\x80\xff"):
    return bytes(r.choice(list(alphabet), int(r.integers(0, 8))).astype(np.uint8).tolist())


def test_strlen_strcmp_strncmp(lib):
    r = np.random.default_rng(4)
    for _ in range(3000):
        x, y = rand_str(r), rand_str(r)
        assert lib.bft_strlen(x) == len(x)
        assert sign(lib.bft_strcmp(x, y)) == sign((x > y) - (x < y))
        n = int(r.integers(0, 10))
        xs, ys = x[:n], y[:n]
        assert sign(lib.bft_strncmp(x, y, n)) == sign((xs > ys) - (xs < ys))


def test_strchr(lib):
    s = b"hello, w\xe9rld"
    base = ctypes.create_string_buffer(s)
    a = ctypes.addressof(base)
    lib.bft_strchr.argtypes = [ctypes.c_void_p, ctypes.c_int]
    for c in set(s) | {0, ord("z"), 0x100 + ord("h")}:
        got = lib.bft_strchr(a, c)
        idx = (s + b"\0").find(bytes([c & 0xff]))
        assert got == (a + idx if idx >= 0 else None), c

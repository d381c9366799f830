"""src/libc/stdlib: qsort against sorted() and determinism, abs.

The real qsort.c/abs.c are compiled natively (names renamed to bft_<name>) together with a
small C driver written by this test that supplies comparators for several element sizes.
"""
import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LIBC = REPO / "src" / "libc"

DRIVER = r"""
#include <stdlib.h>
#include <stdint.h>
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}
struct pi { float p; int i; };
/* the sampler's order: probability descending, index ascending on ties */
static int cmp_pi(const void *a, const void *b) {
    const struct pi *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->i > y->i) - (x->i < y->i);
}
/* 3-byte records compared on the first byte only: many ties, odd size */
static int cmp_first(const void *a, const void *b) {
    return (int)*(const unsigned char *)a - (int)*(const unsigned char *)b;
}
static long calls;
static int cmp_int_count(const void *a, const void *b) { calls++; return cmp_int(a, b); }
void sort_ints(int *v, size_t n) { qsort(v, n, sizeof *v, cmp_int); }
long sort_ints_count(int *v, size_t n) { calls = 0; qsort(v, n, sizeof *v, cmp_int_count); return calls; }
void sort_pi(struct pi *v, size_t n) { qsort(v, n, sizeof *v, cmp_pi); }
void sort_rec3(unsigned char *v, size_t n) { qsort(v, n, 3, cmp_first); }
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("libcstdlib")
    (d / "driver.c").write_text(DRIVER)
    out = d / "libbfstdlib.so"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu", "-shared",
           "-fPIC", "-O2", "-ffreestanding", "-fno-sanitize=all", f"-I{LIBC / 'include'}",
           "-Dqsort=bft_qsort", "-Dabs=bft_abs", str(LIBC / "stdlib" / "qsort.c"),
           str(LIBC / "stdlib" / "abs.c"), str(d / "driver.c"), "-o", str(out)]
    subprocess.run(cmd, check=True)
    L = ctypes.CDLL(str(out))
    L.sort_ints_count.restype = ctypes.c_long
    return L


def as_ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def test_qsort_ints_match_sorted(lib):
    r = np.random.default_rng(5)
    for n in list(range(0, 20)) + [100, 1000, 5000]:
        for hi in (3, 1 << 30):
            v = r.integers(-hi, hi, n, dtype=np.int32)
            want = sorted(v.tolist())
            lib.sort_ints(as_ptr(v), ctypes.c_size_t(n))
            assert v.tolist() == want


def test_qsort_worst_case_bound(lib):
    """Heap sort: comparisons stay O(n log n) even on sorted and reversed input."""
    n = 4096
    for v in (np.arange(n, dtype=np.int32), np.arange(n, 0, -1, dtype=np.int32),
              np.zeros(n, dtype=np.int32)):
        calls = lib.sort_ints_count(as_ptr(v), ctypes.c_size_t(n))
        assert calls <= 2 * n * 12 + n
        assert np.all(np.diff(v) >= 0)


def test_qsort_sampler_order(lib):
    r = np.random.default_rng(6)
    dt = np.dtype([("p", np.float32), ("i", np.int32)])
    for n in (1, 2, 50, 512, 3000):
        v = np.zeros(n, dtype=dt)
        v["p"] = r.choice(np.float32([0.5, 0.25, 0.125, 0.01]), n)   # many ties
        v["i"] = r.permutation(n)
        want = sorted(zip(v["p"].tolist(), v["i"].tolist()), key=lambda t: (-t[0], t[1]))
        lib.sort_pi(as_ptr(v), ctypes.c_size_t(n))
        assert list(zip(v["p"].tolist(), v["i"].tolist())) == want


def test_qsort_odd_size_deterministic(lib):
    r = np.random.default_rng(7)
    n = 777
    rec = r.integers(0, 256, (n, 3), dtype=np.uint8)
    rec[:, 0] %= 5
    a, b = rec.copy(), rec.copy()
    lib.sort_rec3(as_ptr(a), ctypes.c_size_t(n))
    lib.sort_rec3(as_ptr(b), ctypes.c_size_t(n))
    assert np.array_equal(a, b)                       # same input -> same order
    assert np.all(np.diff(a[:, 0].astype(int)) >= 0)  # sorted on the key
    # a permutation of the input records (nothing lost or torn)
    assert sorted(map(bytes, a)) == sorted(map(bytes, rec))


def test_abs(lib):
    for v in (0, 1, -1, 123456, -2147483647, 2147483647):
        assert lib.bft_abs(v) == abs(v)

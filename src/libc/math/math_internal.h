/* math_internal.h - private double-precision kernels shared by the float maths files.
 *
 * Promise: static inline helpers only (no external symbols), so each public function
 * still lives in its own object and the build's symbol selection stays exact.
 * Every float function evaluates in double and rounds once at the end; the kernels
 * here keep the double error near 1e-15 relative, so the float results are within
 * about half an ulp of the true value (tests/test_libc_math.py measures it).
 *
 * FP contraction is switched off so a compiler targeting FMA hardware produces the
 * same bits as the baseline build.
 */
#ifndef BAREFLOW_LIBC_MATH_INTERNAL_H
#define BAREFLOW_LIBC_MATH_INTERNAL_H

#include <stdint.h>

#pragma STDC FP_CONTRACT OFF

static inline uint32_t bf_f2u(float f)
{
    union { float f; uint32_t u; } p = { .f = f };
    return p.u;
}

static inline float bf_u2f(uint32_t u)
{
    union { uint32_t u; float f; } p = { .u = u };
    return p.f;
}

static inline uint64_t bf_d2u(double d)
{
    union { double d; uint64_t u; } p = { .d = d };
    return p.u;
}

static inline double bf_u2d(uint64_t u)
{
    union { uint64_t u; double d; } p = { .u = u };
    return p.d;
}

/* 2^k as a double for -1022 <= k <= 1023. */
static inline double bf_pow2(int k)
{
    return bf_u2d((uint64_t)(k + 1023) << 52);
}

/* Nearest integer (halves away from zero) without calling round(), for |v| < 2^31. */
static inline int bf_nearest(double v)
{
    return (int)(v >= 0 ? v + 0.5 : v - 0.5);
}

/* e^t in double.  |t| <= 700 keeps 2^k normal; callers that round to float clamp first.
 * t = k*ln2 + r with |r| <= ln2/2 (ln2 split so k*LN2_HI is exact), then a degree-13
 * Taylor polynomial whose truncation error is below 1e-17 on that interval. */
static inline double bf_exp_d(double t)
{
    const double LN2_HI = 0x1.62e42fee00000p-1;   /* 32 significant bits */
    const double LN2_LO = 0x1.a39ef35793c76p-33;
    const double INV_LN2 = 0x1.71547652b82fep+0;
    int k = bf_nearest(t * INV_LN2);
    double r = (t - k * LN2_HI) - k * LN2_LO;
    double p = 1.0 / 6227020800.0;                 /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p * bf_pow2(k);
}

/* ln(v) in double for a positive, finite, normal double v.
 * v = 2^e * m with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m-1)/(m+1),
 * |s| <= 0.1716, series to s^21 (truncation below 1e-17 relative). */
static inline double bf_log_d(double v)
{
    const double LN2 = 0x1.62e42fefa39efp-1;
    uint64_t u = bf_d2u(v);
    int e = (int)((u >> 52) & 0x7ff) - 1023;
    double m = bf_u2d((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1;
    }
    double s = (m - 1.0) / (m + 1.0);
    double z = s * s;
    double p = 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    p = p * z + 1.0;
    return e * LN2 + 2.0 * s * p;
}

/* sin and cos of |r| <= pi/4 (plus rounding slack): Taylor series to r^15 / r^16,
 * truncation below 1e-16 relative on that interval. */
static inline double bf_sin_kernel(double r)
{
    double z = r * r;
    double p = -1.0 / 1307674368000.0;             /* -1/15! */
    p = p * z + 1.0 / 6227020800.0;
    p = p * z - 1.0 / 39916800.0;
    p = p * z + 1.0 / 362880.0;
    p = p * z - 1.0 / 5040.0;
    p = p * z + 1.0 / 120.0;
    p = p * z - 1.0 / 6.0;
    return r + r * z * p;
}

static inline double bf_cos_kernel(double r)
{
    double z = r * r;
    double p = 1.0 / 20922789888000.0;             /* 1/16! */
    p = p * z - 1.0 / 87178291200.0;
    p = p * z + 1.0 / 479001600.0;
    p = p * z - 1.0 / 3628800.0;
    p = p * z + 1.0 / 40320.0;
    p = p * z - 1.0 / 720.0;
    p = p * z + 1.0 / 24.0;
    p = p * z - 0.5;
    return 1.0 + z * p;
}

/* Bits 1..256 of the binary fraction of 2/pi (word 0 holds weights 2^-1 .. 2^-32).
 * Generated from an exact integer computation of pi; tests/test_libc_math.py re-derives
 * them with mpmath. */
static const uint32_t bf_two_over_pi_bits[8] = {
    0xa2f9836e, 0x4e441529, 0xfc2757d1, 0xf534ddc0,
    0xdb629599, 0x3c439041, 0xfe5163ab, 0xdebbc561,
};

/* Reduce a finite float x: returns the quadrant n (mod 4) and sets *r so that
 * x = n*pi/2 + r with |r| <= pi/4 (tiny slack), r accurate to ~1e-16 relative. */
static inline int bf_rem_pio2f(float x, double *r)
{
    const double PIO2_1 = 0x1.921fb54400000p+0;   /* 33 bits: k*PIO2_1 exact for k < 2^20 */
    const double PIO2_2 = 0x1.0b4611a600000p-34;  /* next 33 bits */
    const double PIO2_3 = 0x1.3198a2e037073p-69;  /* the rest */
    const double TWO_OVER_PI = 0x1.45f306dc9c883p-1;
    const double PIO2 = 0x1.921fb54442d18p+0;
    uint32_t ux = bf_f2u(x) & 0x7fffffffu;
    if (ux < 0x49800000u) {                        /* |x| < 2^20: Cody-Waite */
        double xd = x;
        int k = bf_nearest(xd * TWO_OVER_PI);
        *r = ((xd - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
        return k & 3;
    }
    /* Payne-Hanek: |x| = M * 2^E with M a 24-bit integer.  Bits of 2/pi heavier than
     * 2^(-E+1) only add multiples of 4 to x*2/pi, so a 96-bit window starting at bit
     * s = E-1 gives the quadrant and ~94 fraction bits exactly (up to the window's end). */
    int E = (int)(ux >> 23) - 150;                 /* >= -3 here */
    uint64_t M = (ux & 0x007fffffu) | 0x00800000u;
    int s = E - 1 > 1 ? E - 1 : 1;
    int b = s - 1, wi = b / 32, sh = b % 32;
    unsigned __int128 win = 0;
    for (int i = 0; i < 4; i++)
        win = (win << 32) | bf_two_over_pi_bits[wi + i];
    win = (win << sh) >> 32;                       /* top 96 bits of the window */
    unsigned __int128 prod = win * M;              /* < 2^120 */
    int F = s + 95 - E;                            /* fraction bits in prod */
    int n = (int)(prod >> F) & 3;
    unsigned __int128 one = (unsigned __int128)1 << F;
    unsigned __int128 frac = prod & (one - 1);
    int neg = 0;
    if (frac >= one >> 1) {                        /* round the quadrant to nearest */
        frac = one - frac;
        neg = 1;
        n = (n + 1) & 3;
    }
    double f = 0.0;
    if (frac != 0) {
        uint64_t hi = (uint64_t)(frac >> 64), lo = (uint64_t)frac;
        int lead = hi ? 127 - __builtin_clzll(hi) : 63 - __builtin_clzll(lo);
        uint64_t top = lead >= 63 ? (uint64_t)(frac >> (lead - 63))
                                  : (uint64_t)(frac << (63 - lead));
        f = (double)top * bf_pow2(lead - 63 - F);
    }
    double red = (neg ? -f : f) * PIO2;
    if (bf_f2u(x) >> 31) {                         /* sin is odd, cos even: mirror */
        red = -red;
        n = (4 - n) & 3;
    }
    *r = red;
    return n;
}

#endif

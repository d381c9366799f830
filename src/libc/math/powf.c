/* powf.c - x raised to y.
 *
 * Promise: for x > 0, exp(y * ln x) evaluated in double (ln x to ~1e-16 relative, so the
 * product keeps float accuracy for every y whose result is representable) and rounded
 * once; overflow gives +inf and underflow +0.  C99 special cases: pow(x, +-0) = 1,
 * pow(1, y) = 1, NaN otherwise propagates; x = +-0 gives 0 or inf by the sign of y
 * (keeping the sign for odd integer y); negative x with integer y takes the sign from
 * y's parity; negative x with non-integer y gives NaN; infinite x and y follow C99.
 */
#include <math.h>
#include "math_internal.h"

/* 0: y is not an integer, 1: odd integer, 2: even integer (y finite). */
static int int_kind(float y)
{
    float a = y < 0 ? -y : y;
    if (a >= 16777216.0f)              /* 2^24 and above: every float is an even integer */
        return 2;
    int64_t i = (int64_t)a;
    if ((float)i != a)
        return 0;
    return (i & 1) ? 1 : 2;
}

float powf(float x, float y)
{
    uint32_t ux = bf_f2u(x), uy = bf_f2u(y);
    if ((uy & 0x7fffffffu) == 0 || x == 1.0f)
        return 1.0f;
    if (x != x || y != y)
        return x + y;
    float ax = bf_u2f(ux & 0x7fffffffu);
    int yinf = (uy & 0x7fffffffu) == 0x7f800000u;
    if (yinf) {
        if (ax == 1.0f)
            return 1.0f;               /* pow(-1, +-inf) = 1 */
        int grow = (ax > 1.0f) == (y > 0);
        return grow ? __builtin_inff() : 0.0f;
    }
    int kind = int_kind(y);
    int neg_result = (ux >> 31) && kind == 1;
    if (ax == 0.0f || ax == __builtin_inff()) {
        /* 0^y and inf^y: magnitude 0 or inf, sign kept only for odd integer y */
        int big = (ax == 0.0f) == (y < 0);
        float mag = big ? __builtin_inff() : 0.0f;
        return neg_result ? -mag : mag;
    }
    if ((ux >> 31) && kind == 0)
        return __builtin_nanf("");
    double t = (double)y * bf_log_d((double)ax);
    double v;
    if (t > 89.0)                      /* result above FLT_MAX */
        v = __builtin_inf();
    else if (t < -104.0)               /* below half the smallest subnormal */
        v = 0.0;
    else
        v = bf_exp_d(t);
    return (float)(neg_result ? -v : v);
}

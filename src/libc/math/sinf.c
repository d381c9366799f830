/* sinf.c - sine of a float, for every finite argument.
 *
 * Promise: argument reduction by pi/2 is accurate for all floats (Cody-Waite below 2^20,
 * Payne-Hanek above), the kernel runs in double and the result is rounded once;
 * inf and NaN give NaN.
 */
#include <math.h>
#include "math_internal.h"

float sinf(float x)
{
    if ((bf_f2u(x) & 0x7fffffffu) >= 0x7f800000u)
        return x - x;
    if (x == 0.0f)
        return x;                      /* keeps the sign of -0 */
    double r;
    int n = bf_rem_pio2f(x, &r);
    double v;
    switch (n) {
    case 0: v = bf_sin_kernel(r); break;
    case 1: v = bf_cos_kernel(r); break;
    case 2: v = -bf_sin_kernel(r); break;
    default: v = -bf_cos_kernel(r); break;
    }
    return (float)v;
}

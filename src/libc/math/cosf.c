/* cosf.c - cosine of a float, for every finite argument.
 *
 * Promise: same reduction and kernels as sinf (accurate for all floats), result rounded
 * once from double; inf and NaN give NaN.
 */
#include <math.h>
#include "math_internal.h"

float cosf(float x)
{
    if ((bf_f2u(x) & 0x7fffffffu) >= 0x7f800000u)
        return x - x;
    double r;
    int n = bf_rem_pio2f(x, &r);
    double v;
    switch (n) {
    case 0: v = bf_cos_kernel(r); break;
    case 1: v = -bf_sin_kernel(r); break;
    case 2: v = -bf_cos_kernel(r); break;
    default: v = bf_sin_kernel(r); break;
    }
    return (float)v;
}

/* logf.c - natural logarithm of a float.
 *
 * Promise: evaluated in double and rounded once; logf(0) = -inf, negative input gives
 * NaN, logf(+inf) = +inf, NaN gives NaN; subnormal inputs are exact-scaled first.
 */
#include <math.h>
#include "math_internal.h"

float logf(float x)
{
    uint32_t u = bf_f2u(x);
    if (x != x)
        return x;
    if ((u & 0x7fffffffu) == 0)
        return -__builtin_inff();
    if (u >> 31)
        return __builtin_nanf("");
    if (u == 0x7f800000u)
        return x;
    /* Converting to double makes subnormal floats normal doubles: no special path. */
    return (float)bf_log_d((double)x);
}

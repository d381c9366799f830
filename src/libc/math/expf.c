/* expf.c - e^x for float x.
 *
 * Promise: evaluated in double and rounded once (measured max error in docs/libc.md);
 * overflow gives +inf above ln(FLT_MAX), underflow gives +0 below the smallest
 * subnormal's log (subnormal results are rounded correctly by the final conversion);
 * NaN gives NaN.
 */
#include <math.h>
#include "math_internal.h"

float expf(float x)
{
    if (x != x)
        return x;
    if (x > 88.8f)                     /* e^88.8 > FLT_MAX */
        return __builtin_inff();
    if (x < -104.0f)                   /* e^-104 < half the smallest subnormal */
        return 0.0f;
    return (float)bf_exp_d((double)x);
}

/* tanhf.c - hyperbolic tangent of a float.
 *
 * Promise: odd, |result| <= 1, rounded once from a double evaluation: a Taylor series
 * for |x| < 1/8 (avoids the cancellation in 1 - 2/(e^2x + 1)), the exp form up to
 * |x| = 10, and +-1 beyond (tanh(10) rounds to 1.0f).  NaN gives NaN.
 */
#include <math.h>
#include "math_internal.h"

float tanhf(float x)
{
    if (x != x)
        return x;
    double a = x < 0 ? -(double)x : (double)x;
    double t;
    if (a < 0.125) {
        /* tanh a = a - a^3/3 + 2a^5/15 - 17a^7/315 + 62a^9/2835 - 1382a^11/155925 */
        double z = a * a;
        double p = -1382.0 / 155925.0;
        p = p * z + 62.0 / 2835.0;
        p = p * z - 17.0 / 315.0;
        p = p * z + 2.0 / 15.0;
        p = p * z - 1.0 / 3.0;
        t = a + a * z * p;
    } else if (a < 10.0) {
        t = 1.0 - 2.0 / (bf_exp_d(2.0 * a) + 1.0);
    } else {
        t = 1.0;
    }
    return (float)((bf_f2u(x) >> 31) ? -t : t);   /* tanh(-0) = -0 */
}

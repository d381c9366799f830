/* fabsf.c - |x| by clearing the sign bit (also for NaN and -0). */
#include <math.h>
#include "math_internal.h"

float fabsf(float x)
{
    return bf_u2f(bf_f2u(x) & 0x7fffffffu);
}

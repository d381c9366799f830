/* math.h - BareFlow freestanding libc: single-precision maths for a transformer.
 *
 * Promise: each function returns a float within the error bound documented in
 * docs/libc.md (measured by tests/test_libc_math.py) over the ranges inference uses.
 * No errno, no floating-point exception guarantees; NaN in gives NaN out.
 */
#ifndef BAREFLOW_LIBC_MATH_H
#define BAREFLOW_LIBC_MATH_H

#define INFINITY (__builtin_inff())
#define NAN (__builtin_nanf(""))
#define isnan(x) __builtin_isnan(x)
#define isinf(x) __builtin_isinf(x)

float expf(float x);
float logf(float x);
float sqrtf(float x);
float powf(float x, float y);
float sinf(float x);
float cosf(float x);
float fabsf(float x);
float tanhf(float x);

#endif

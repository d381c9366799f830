/* sqrtf.c - correctly rounded square root (the SSE sqrtss instruction).
 *
 * Promise: IEEE-754 sqrt: sqrtf(-0) = -0, negative input gives NaN, never calls out.
 * __builtin_elementwise_sqrt always lowers to the llvm.sqrt intrinsic; __builtin_sqrtf
 * may become a call to sqrtf itself when the target keeps errno semantics.
 */
#include <math.h>

float sqrtf(float x)
{
    return __builtin_elementwise_sqrt(x);
}

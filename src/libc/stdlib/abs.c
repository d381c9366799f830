/* abs.c - absolute value of an int (abs(INT_MIN) is undefined, as in C). */
#include <stdlib.h>

int abs(int x)
{
    return x < 0 ? -x : x;
}

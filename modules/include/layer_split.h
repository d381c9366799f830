/* layer_split.h - which units of which phase a layer call does (layer ABI 3, "Work split").
 *
 * Promise: bf_split_range(c, phase, units, &b, &e) is 1 when the call must do phase `phase`,
 * with [b, e) the units to do: all of them for a whole call (c->split == 0), else the call's
 * range clamped to [0, units) when c->phase is `phase`; 0 when the call is for another phase.
 * A layer that runs each phase it is asked for, in order, over [b, e) therefore does the same
 * arithmetic per unit whether it is called whole or in chunks on several cores.
 */
#ifndef BAREFLOW_LAYER_SPLIT_H
#define BAREFLOW_LAYER_SPLIT_H

#include "bareflow/layer_abi.h"

static inline int bf_split_range(const struct bf_layer_call *c, int phase, int units, int *b, int *e)
{
    if (!c->split) {
        *b = 0;
        *e = units;
        return 1;
    }
    if (c->phase != phase)
        return 0;
    *b = c->begin < 0 ? 0 : c->begin;
    *e = c->end > units ? units : c->end;
    return *b < *e;
}

#endif

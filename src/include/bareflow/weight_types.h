/* weight_types.h - the weight types a struct bf_weight may hold, shared by kernel and modules.
 *
 * Promise: codes are ggml's enum ggml_type values (ggml.h), and bf_row_bytes gives the bytes of
 * one row in GGUF's layout (ggml-common.h's block structs; see modules/include/quant.h), or 0 for
 * a type the layer modules do not run or a column count the type's blocks do not divide.
 */
#ifndef BAREFLOW_WEIGHT_TYPES_H
#define BAREFLOW_WEIGHT_TYPES_H

#include <stddef.h>

#define BF_GGML_F32 0
#define BF_GGML_F16 1
#define BF_GGML_Q4_0 2
#define BF_GGML_Q4_1 3
#define BF_GGML_Q8_0 8

#define BF_QK 32                   /* weights per block for Q4_0, Q4_1, Q8_0 */

static inline size_t bf_row_bytes(int type, int cols)
{
    size_t blocks = (size_t)(cols / BF_QK);
    int whole = cols % BF_QK == 0;
    switch (type) {
    case BF_GGML_F32: return (size_t)cols * 4;
    case BF_GGML_F16: return (size_t)cols * 2;
    case BF_GGML_Q4_0: return whole ? blocks * 18 : 0;
    case BF_GGML_Q4_1: return whole ? blocks * 20 : 0;
    case BF_GGML_Q8_0: return whole ? blocks * 34 : 0;
    default: return 0;
    }
}

#endif

/* util.c - small shared pieces of the runtime: CRC-32, little-endian reads, checked allocation,
 * and the names of layers, tiers and ISA levels.
 *
 * Promise: bf_crc32 equals zlib.crc32 (IEEE polynomial, reflected, initial and final xor
 * 0xFFFFFFFF, chainable by passing the previous result); bf_alloc never returns NULL.
 */
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "rt.h"

const char *const bf_layer_names[BF_N_LAYERS] = {
    "embed", "rmsnorm", "qkv", "rope", "attn", "attnout", "ffn", "classify", "sampler",
};
const char *const bf_tier_names[BF_N_TIERS] = {"O0", "O1", "O2", "O3"};
const char *const bf_isa_names[4] = {"x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};

uint32_t bf_crc32(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    if (!table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
            table[i] = c;
        }
    }
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint16_t bf_le16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | b[1] << 8);
}

uint32_t bf_le32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint64_t bf_le64(const void *p)
{
    const uint8_t *b = p;
    return bf_le32(b) | (uint64_t)bf_le32(b + 4) << 32;
}

void *bf_alloc(size_t size, size_t align, const char *what)
{
    void *p = platform_alloc(size, align);
    if (!p)
        bf_panic("out of memory: %s needs %zu bytes, arena has %zu of %zu used", what, size,
                 platform_arena_used(), platform_arena_size());
    return p;
}

/* Shell sort: a few thousand values at most (timing samples), no allocation, deterministic. */
void bf_sort_u64(uint64_t *v, size_t n)
{
    for (size_t gap = n / 2; gap; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && v[j - gap] > v[j]; j -= gap) {
                uint64_t t = v[j];
                v[j] = v[j - gap];
                v[j - gap] = t;
            }
}

/* sampler.c - layer "sampler": choose the next token from s->logits.
 *
 * Promise (llama2.c's sample(), with the coin supplied by the kernel in c->coin):
 *  - temperature == 0: the argmax, lowest index on ties;
 *  - the largest logit / temperature overflows float32 (a tiny temperature): the argmax too,
 *    the limit of the distribution (softmax would otherwise produce NaN);
 *  - otherwise probs = softmax(logits / temperature) in s->probs (logits stay untouched), then
 *    - topp <= 0 or topp >= 1: the first i whose running sum of probs exceeds coin
 *      (the last index if rounding leaves none);
 *    - else nucleus sampling: keep i with probs[i] >= (1 - topp) / (n - 1), order them by
 *      probability descending (index ascending on ties), take the shortest prefix whose
 *      mass exceeds topp (all kept ones if none does), and pick the first whose running
 *      sum exceeds coin * that mass.  If nothing passes the cutoff (only possible when
 *      topp < 1/n), the argmax is chosen.
 * Writes c->result, s->probs and s->indices.
 */
#include <stdlib.h>
#include "bareflow/layer_abi.h"
#include "layer_math.h"

/* qsort's comparator gets only element pointers, so it reads the probabilities through
 * this pointer, set for the duration of one sort (layers never run concurrently). */
static const float *sort_probs;

static int by_prob_desc(const void *a, const void *b)
{
    int i = *(const int *)a;
    int j = *(const int *)b;
    if (sort_probs[i] > sort_probs[j])
        return -1;
    if (sort_probs[i] < sort_probs[j])
        return 1;
    return (i > j) - (i < j);
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (v[i] > v[best])
            best = i;
    }
    return best;
}

static int sample_mult(const float *probs, int n, float coin)
{
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf)
            return i;
    }
    return n - 1;
}

static int sample_topp(const float *probs, int *idx, int n, float topp, float coin)
{
    float cutoff = (1.0f - topp) / (n - 1);
    int n0 = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] >= cutoff)
            idx[n0++] = i;
    }
    if (n0 == 0)
        return argmax(probs, n);
    sort_probs = probs;
    qsort(idx, (size_t)n0, sizeof idx[0], by_prob_desc);
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative += probs[idx[i]];
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative;
    float cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += probs[idx[i]];
        if (r < cdf)
            return idx[i];
    }
    return idx[last];
}

void bf_layer_entry(struct bf_layer_call *c)
{
    struct bf_state *s = c->s;
    int n = c->cfg->vocab_size;
    if (c->temperature == 0.0f) {
        c->result = argmax(s->logits, n);
        return;
    }
    /* A temperature so small that the largest logit divided by it overflows float32 leaves
     * nothing to sample: every other token's probability is below float32's resolution, and
     * softmax would compute inf - inf.  The limit of the distribution is the argmax. */
    int top = argmax(s->logits, n);
    float scaled_top = s->logits[top] / c->temperature;
    if (!(scaled_top - scaled_top == 0.0f)) {
        c->result = top;
        return;
    }
    for (int i = 0; i < n; i++)
        s->probs[i] = s->logits[i] / c->temperature;
    bf_softmax(s->probs, n);
    if (c->topp <= 0.0f || c->topp >= 1.0f || n < 2)
        c->result = sample_mult(s->probs, n, c->coin);
    else
        c->result = sample_topp(s->probs, s->indices, n, c->topp, c->coin);
}

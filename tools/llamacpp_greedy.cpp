// llamacpp_greedy - llama.cpp's greedy decoding on one thread, printing token ids.
//
// Our own small program against llama.cpp's public API (include/llama.h), built by
// tools/llamacpp.py next to llama.cpp's tools.  It makes the calls llama.cpp's example
// `llama-simple` makes (tokenize with add_special/parse_special, the prompt decoded as one batch,
// a greedy sampler, stop at end-of-generation) with two differences the report needs:
// llama-simple has no thread option and runs GGML_DEFAULT_N_THREADS (4) busy-waiting threads,
// which on a shared two-core machine takes minutes per token; and it prints only token pieces,
// so token ids would have to be guessed back from text.  Here n_threads = 1 and each token is
// printed as one line "id<TAB>hex of its piece's bytes", prompt tokens first:
//
//     llamacpp_greedy MODEL.gguf N_PREDICT PROMPT
//     P <id> <hex>      (a prompt token)
//     G <id> <hex>      (a generated token)
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static void quiet(enum ggml_log_level, const char *, void *) {}

static void emit(const llama_vocab * vocab, char kind, llama_token id) {
    char buf[256];
    int n = llama_token_to_piece(vocab, id, buf, sizeof buf, 0, true);
    if (n < 0) {
        fprintf(stderr, "llamacpp_greedy: token %d has no piece\n", id);
        exit(1);
    }
    printf("%c %d ", kind, id);
    for (int i = 0; i < n; i++)
        printf("%02x", (unsigned char) buf[i]);
    printf("\n");
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT PROMPT\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const int n_predict = atoi(argv[2]);
    const std::string prompt = argv[3];
    llama_log_set(quiet, nullptr);
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(path, mparams);
    if (!model) {
        fprintf(stderr, "llamacpp_greedy: cannot load %s\n", path);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_prompt = -llama_tokenize(vocab, prompt.c_str(), prompt.size(), NULL, 0, true, true);
    std::vector<llama_token> tokens(n_prompt);
    if (n_prompt <= 0 ||
        llama_tokenize(vocab, prompt.c_str(), prompt.size(), tokens.data(), tokens.size(), true, true) < 0) {
        fprintf(stderr, "llamacpp_greedy: cannot tokenize the prompt\n");
        return 1;
    }

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_prompt + n_predict;
    cparams.n_batch = n_prompt;
    cparams.n_threads = 1;
    cparams.n_threads_batch = 1;
    llama_context * ctx = llama_init_from_model(model, cparams);
    if (!ctx) {
        fprintf(stderr, "llamacpp_greedy: cannot create a context\n");
        return 1;
    }
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    for (llama_token id : tokens)
        emit(vocab, 'P', id);

    llama_batch_ext * batch = llama_batch_ext_init(ctx);
    llama_pos pos = 0;
    std::vector<llama_token> next = tokens;
    for (int i = 0; i < n_predict; i++) {
        llama_batch_ext_clear(batch);
        for (size_t j = 0; j < next.size(); j++) {
            const int32_t idx = llama_batch_ext_add_token(batch, 0, next[j]);
            const llama_pos p = pos + (llama_pos) j;
            llama_batch_ext_set_pos(batch, idx, &p);
        }
        llama_batch_ext_set_output_logits(batch, (int32_t) next.size() - 1, true);
        if (llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, batch)) {
            fprintf(stderr, "llamacpp_greedy: decode failed at position %d\n", pos);
            return 1;
        }
        pos += (llama_pos) next.size();
        const llama_token id = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, id))
            break;
        emit(vocab, 'G', id);
        next.assign(1, id);
    }
    llama_batch_ext_free(batch);
    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

/*
 * cache_stub.c - TEMPORARY stand-in for the ChannelQuant cache (src/cache)
 * while it is developed on its own branch: every entry point the model runtime
 * uses fails cleanly with CQ_ERR_UNSUPPORTED, so the runtime's cache path
 * compiles and reports a clear error. Delete this file when src/cache lands.
 */
#include <string.h>

#include "cq_cache.h"

#define NOT_BUILT "the ChannelQuant cache (src/cache) is not part of this build"

void cq_cache_config_default(cq_cache_config *cfg, uint32_t n_layers, uint32_t n_kv_heads,
                             uint32_t head_dim) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layers = n_layers;
    cfg->n_kv_heads = n_kv_heads;
    cfg->head_dim = head_dim;
    cfg->key_codec = CQ_CODEC_FP16;
    cfg->val_codec = CQ_CODEC_FP16;
}
cq_status cq_cache_create(const cq_cache_config *cfg, cq_cache **out, cq_err *err) {
    (void)cfg;
    if (out) *out = NULL;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, NOT_BUILT);
}
void cq_cache_free(cq_cache *c) { (void)c; }
void cq_cache_reset(cq_cache *c) { (void)c; }
cq_status cq_cache_append_f32(cq_cache *c, uint32_t layer, const float *K, const float *V,
                              uint32_t n, cq_err *err) {
    (void)c, (void)layer, (void)K, (void)V, (void)n;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, NOT_BUILT);
}
cq_status cq_cache_memory(const cq_cache *c, int32_t layer, cq_cache_mem *out) {
    (void)c, (void)layer;
    if (out) memset(out, 0, sizeof *out);
    return CQ_ERR_UNSUPPORTED;
}
cq_status cq_mask_load(const char *path, uint32_t n_layers, uint32_t n_kv_heads,
                       uint32_t head_dim, uint8_t *masks, cq_err *err) {
    (void)path, (void)n_layers, (void)n_kv_heads, (void)head_dim, (void)masks;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, NOT_BUILT);
}
cq_status cq_cache_attend(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q_heads,
                          float *out, const cq_attn_opts *opts, cq_err *err) {
    (void)c, (void)layer, (void)q, (void)n_q_heads, (void)out, (void)opts;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, NOT_BUILT);
}
cq_status cq_cache_attend_prefill(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q,
                                  uint32_t pos0, uint32_t n_q_heads, float *out,
                                  const cq_attn_opts *opts, cq_err *err) {
    (void)c, (void)layer, (void)q, (void)n_q, (void)pos0, (void)n_q_heads, (void)out, (void)opts;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, NOT_BUILT);
}

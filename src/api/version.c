/* SPDX-License-Identifier: MIT */
/*
 * version.c - the run-time version of the library and the sizes of its public
 * structs (include/cq_version.h). Nothing else lives here.
 */
#include <string.h>

#include "channelquant.h"
#include "cq_eval.h"
#include "cq_model.h"
#include "cq_batch.h"
#include "cq_serve.h"

unsigned cq_version(void) { return CQ_VERSION_NUMBER; }

const char *cq_version_string(void) { return CQ_VERSION_STRING; }

size_t cq_abi_struct_size(const char *name) {
    static const struct {
        const char *name;
        size_t size;
    } sizes[] = {
        {"cq_err", sizeof(cq_err)},
        {"cq_params", sizeof(cq_params)},
        {"cq_stream_sizes", sizeof(cq_stream_sizes)},
        {"cq_codec_cfg", sizeof(cq_codec_cfg)},
        {"cq_codec_traits", sizeof(cq_codec_traits)},
        {"cq_layer_codecs", sizeof(cq_layer_codecs)},
        {"cq_cache_config", sizeof(cq_cache_config)},
        {"cq_cache_mem", sizeof(cq_cache_mem)},
        {"cq_attn_opts", sizeof(cq_attn_opts)},
        {"cq_cache_load_opts", sizeof(cq_cache_load_opts)},
        {"cq_synth_cfg", sizeof(cq_synth_cfg)},
        {"cq_npy", sizeof(cq_npy)},
        {"cq_model_config", sizeof(cq_model_config)},
        {"cq_session_opts", sizeof(cq_session_opts)},
        {"cq_prefix_stats", sizeof(cq_prefix_stats)},
        {"cq_kvpool_config", sizeof(cq_kvpool_config)},
        {"cq_seq_mem", sizeof(cq_seq_mem)},
        {"cq_kvpool_mem", sizeof(cq_kvpool_mem)},
        {"cq_batch_opts", sizeof(cq_batch_opts)},
        {"cq_batch_step_info", sizeof(cq_batch_step_info)},
        {"cq_batch_stats", sizeof(cq_batch_stats)},
    };
    if (!name) return 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(sizes[i].name, name) == 0) return sizes[i].size;
    return 0;
}

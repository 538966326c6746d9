/* SPDX-License-Identifier: MIT */
/*
 * seq_file_v12.c - a cache file of format version 1 or 2 (one cq_cache, docs/CACHE_FILE.md)
 * loaded into a serving pool as one sequence (cq_kvpool_load_seq).
 */
#include "seq_file.h"

cq_status seqf_load_v12(cq_kvpool *p, const uint8_t *b, size_t n, cq_seq **out, cq_err *err) {
    (void)p, (void)b, (void)n, (void)out;
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                      "a version 1 or 2 cache file holds a cq_cache: load it with cq_cache_load");
}

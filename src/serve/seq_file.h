/* SPDX-License-Identifier: MIT */
/*
 * seq_file.h - shared by the serving pool's file code: seq_file.c (format version 3) and
 * seq_file_v12.c (a version 1 or 2 cache file loaded as one sequence). Internal.
 */
#ifndef CQ_SEQ_FILE_H
#define CQ_SEQ_FILE_H

#include "kvpool_internal.h"

/* Read a cache file for pool p: regular file, header first (magic, header CRC, version
 * 1..3, length), bounded by what the pool could hold; *buf (free it), *len, *version. */
cq_status seqf_read(const cq_kvpool *p, const char *path, uint8_t **buf, size_t *len,
                    uint32_t *version, cq_err *err);
/* A version 1 or 2 image b[0, n) as one new sequence of pool p. */
cq_status seqf_load_v12(cq_kvpool *p, const uint8_t *b, size_t n, cq_seq **out, cq_err *err);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * cq_file.h - the library's one file layer (src/core/fileio.c). Every reader
 * and writer of the library and the cq tool goes through it:
 *
 * Reading: a path is opened with O_NONBLOCK and checked with fstat before
 * anything is read, so a FIFO, device, socket or directory is refused with
 * CQ_ERR_IO instead of blocking or streaming forever. Every read is bounded
 * and a file over the bound is refused before it is read (CQ_ERR_RANGE, the
 * bound in the message). Binary formats read their header first
 * (cq_file_open + cq_file_read_at) and validate it before the body is read.
 *
 * Writing: cq_write_file_atomic replaces a file atomically and durably; see
 * docs/FILE_IO.md for the rules (temporary name, modes, symlinks, non-regular
 * targets, what a crash leaves behind).
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_FILE_H
#define CQ_FILE_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open a regular file for reading without ever blocking. *fd is the open
 * descriptor (close it), *size its length in bytes. Refuses (CQ_ERR_IO) a path
 * that cannot be opened or is not a regular file. */
CQ_API cq_status cq_file_open(const char *path, int *fd, uint64_t *size, cq_err *err);

/* Read exactly n bytes at offset off of an open file; fewer bytes available is
 * CQ_ERR_FORMAT ("truncated"), a read error CQ_ERR_IO. path is for messages. */
CQ_API cq_status cq_file_read_at(int fd, const char *path, uint64_t off, void *buf, size_t n,
                          cq_err *err);

/* Read a whole regular file of at most max_bytes into a NUL-terminated heap
 * buffer (free() it); *len excludes the terminator. A larger file is refused
 * before it is read (CQ_ERR_RANGE). */
CQ_API cq_status cq_read_file(const char *path, size_t max_bytes, char **buf, size_t *len, cq_err *err);

/* The same for a text file: a NUL byte in it is CQ_ERR_FORMAT. */
CQ_API cq_status cq_read_text(const char *path, size_t max_bytes, char **buf, size_t *len, cq_err *err);

/* Replace path with len bytes of data, atomically and durably: a temporary
 * file in the target's directory, fsync, rename over the target, fsync of the
 * directory. An existing target keeps its mode; a new one gets 0666 minus the
 * umask. A symbolic link is followed (the file it names is replaced, the link
 * stays); a dangling link and a non-regular target are refused (CQ_ERR_IO).
 * On any error the target is unchanged and no temporary file is left. */
CQ_API cq_status cq_write_file_atomic(const char *path, const void *data, size_t len, cq_err *err);

/* The bound of the text inputs of the cq tool (--text, --cloze, prompts). */
#define CQ_TEXT_MAX_BYTES ((size_t)1 << 28)

/* An output file written through a stream and committed atomically: f is an
 * in-memory stream; cq_out_commit writes what was printed to path with
 * cq_write_file_atomic, cq_out_abort drops it (the target is never touched). */
typedef struct cq_out {
    FILE *f;
    char *buf;
    size_t len;
    const char *path;
} cq_out;
CQ_API cq_status cq_out_open(cq_out *o, const char *path, cq_err *err);
CQ_API cq_status cq_out_commit(cq_out *o, cq_err *err);
CQ_API void cq_out_abort(cq_out *o);

/* Shorten path for an error message to at most cap - 1 bytes, keeping its
 * end (the file name) after "...": a long path never crowds out the cause. */
CQ_API const char *cq_path_brief(const char *path, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif

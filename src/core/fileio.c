/* SPDX-License-Identifier: MIT */
/*
 * fileio.c - the library's one file layer (include/cq_file.h,
 * docs/FILE_IO.md): non-blocking open with a regular-file check, bounded and
 * positioned reads, whole-file and text reads with a stated bound, and the
 * atomic, durable, mode-preserving file replacement.
 * Not here: any file format (each format's module parses its own bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cq_file.h"

#define BRIEF 96 /* bytes of a path quoted in an error message */

const char *cq_path_brief(const char *path, char *buf, size_t cap) {
    if (!cap) return "";
    if (!path) path = "(null)";
    size_t n = strlen(path);
    if (n < cap) {
        memcpy(buf, path, n + 1);
    } else if (cap < 8) {
        buf[0] = '\0';
    } else {
        size_t keep = cap - 4; /* "..." + tail + NUL */
        memcpy(buf, "...", 3);
        memcpy(buf + 3, path + n - keep, keep + 1);
    }
    return buf;
}

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

cq_status cq_file_open(const char *path, int *fd, uint64_t *size, cq_err *err) {
    if (!path || !fd || !size) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    *fd = -1;
    *size = 0;
    char b[BRIEF];
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked next */
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0)
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "cannot open (%s): %s", strerror(errno),
                          cq_path_brief(path, b, sizeof b));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "cannot stat (%s): %s", strerror(e),
                          cq_path_brief(path, b, sizeof b));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "not a regular file (%s): %s",
                          kind_of(sb.st_mode), cq_path_brief(path, b, sizeof b));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl != -1) (void)fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return CQ_OK;
}

cq_status cq_file_read_at(int fd, const char *path, uint64_t off, void *buf, size_t n,
                          cq_err *err) {
    char b[BRIEF];
    if (off > (uint64_t)INT64_MAX - n)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "read at offset %llu out of range: %s",
                          (unsigned long long)off, cq_path_brief(path, b, sizeof b));
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return cq_err_set(err, CQ_ERR_IO, -1, -1, "read error (%s): %s", strerror(errno),
                              cq_path_brief(path, b, sizeof b));
        if (r == 0)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "truncated: %zu bytes at offset %llu, the file ends after %llu: %s",
                              n, (unsigned long long)off, (unsigned long long)(off + got),
                              cq_path_brief(path, b, sizeof b));
        got += (size_t)r;
    }
    return CQ_OK;
}

cq_status cq_read_file(const char *path, size_t max_bytes, char **buf, size_t *len, cq_err *err) {
    if (!path || !buf || !len) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    *buf = NULL;
    *len = 0;
    int fd;
    uint64_t size;
    cq_status st = cq_file_open(path, &fd, &size, err);
    if (st) return st;
    char b[BRIEF];
    if (size > (uint64_t)max_bytes || size >= SIZE_MAX) {
        close(fd);
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "%llu bytes, more than the limit of %zu bytes for this file: %s",
                          (unsigned long long)size, max_bytes, cq_path_brief(path, b, sizeof b));
    }
    size_t n = (size_t)size;
    char *p = malloc(n + 1);
    if (!p) {
        close(fd);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "cannot allocate %zu bytes for %s", n + 1,
                          cq_path_brief(path, b, sizeof b));
    }
    st = cq_file_read_at(fd, path, 0, p, n, err);
    char extra;
    if (!st) { /* the file must not have grown since fstat */
        ssize_t r;
        do r = pread(fd, &extra, 1, (off_t)n);
        while (r < 0 && errno == EINTR);
        if (r != 0)
            st = cq_err_set(err, CQ_ERR_IO, -1, -1, "the file changed while being read: %s",
                            cq_path_brief(path, b, sizeof b));
    }
    close(fd);
    if (st) {
        free(p);
        return st;
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return CQ_OK;
}

cq_status cq_read_text(const char *path, size_t max_bytes, char **buf, size_t *len, cq_err *err) {
    cq_status st = cq_read_file(path, max_bytes, buf, len, err);
    if (st) return st;
    const char *z = memchr(*buf, '\0', *len);
    if (z) {
        char b[BRIEF];
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "binary data (a NUL byte at offset %zu) in a "
                        "text file: %s", (size_t)(z - *buf), cq_path_brief(path, b, sizeof b));
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    return st;
}

/* ------------------------------------------------------------ atomic write */

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* dir + "/.cq-XXXXXXXXXX.tmp": short whatever the target's name, so a target name
 * of NAME_MAX bytes still has a temporary name */
static void temp_name(char *tmp, const char *dir, size_t dl) {
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t r = mix64(((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^
                       ((uint64_t)ts.tv_sec << 20) ^ mix64(atomic_fetch_add(&counter, 1)));
    static const char al[] = "abcdefghijklmnopqrstuvwxyz012345";
    memcpy(tmp, dir, dl);
    char *p = tmp + dl;
    memcpy(p, "/.cq-", 5);
    p += 5;
    for (int i = 0; i < 10; i++, r >>= 5) *p++ = al[r & 31];
    memcpy(p, ".tmp", 5);
}

cq_status cq_write_file_atomic(const char *path, const void *data, size_t len, cq_err *err) {
    if (!path || (len && !data)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    char b[BRIEF];
    if (!*path) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "empty file name");
    char *real = NULL, *tmp = NULL;
    const char *target = path;
    cq_status st = CQ_OK;
    int exists = 0, fd = -1;
    mode_t mode = 0666;
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (S_ISLNK(sb.st_mode)) { /* write through the link: replace the file it names */
            real = realpath(path, NULL);
            if (!real || stat(real, &sb) != 0) {
                st = cq_err_set(err, CQ_ERR_IO, -1, -1,
                                "a symbolic link to a missing file (%s): refusing to write: %s",
                                strerror(errno), cq_path_brief(path, b, sizeof b));
                goto out;
            }
            target = real;
        }
        if (!S_ISREG(sb.st_mode)) {
            st = cq_err_set(err, CQ_ERR_IO, -1, -1,
                            "not a regular file (%s): refusing to replace it: %s",
                            kind_of(sb.st_mode), cq_path_brief(path, b, sizeof b));
            goto out;
        }
        exists = 1;
        mode = sb.st_mode & 07777;
    } else if (errno != ENOENT) {
        st = cq_err_set(err, CQ_ERR_IO, -1, -1, "cannot stat (%s): %s", strerror(errno),
                        cq_path_brief(path, b, sizeof b));
        goto out;
    }
    const char *slash = strrchr(target, '/');
    const char *dir = slash ? target : ".";
    size_t dl = slash ? (slash == target ? 1 : (size_t)(slash - target)) : 1;
    if (slash && slash == target) dir = "/";
    tmp = malloc(dl + 24);
    if (!tmp) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto out;
    }
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        temp_name(tmp, dir, dl);
        /* a new file: 0666 less the umask (the kernel applies it); an existing one: never
         * wider than its mode while the data is written, then exactly its mode */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  exists ? (mode & 0777) : 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        st = cq_err_set(err, CQ_ERR_IO, -1, -1,
                        "cannot create a temporary file in its directory (%s): %s",
                        strerror(errno), cq_path_brief(path, b, sizeof b));
        goto out;
    }
    int e = 0;
    if (exists && fchmod(fd, mode) != 0) e = errno;
    const unsigned char *p = data;
    size_t left = len;
    while (left && !e) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            e = errno;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && rename(tmp, target) != 0) e = errno;
    if (e) {
        unlink(tmp);
        st = cq_err_set(err, CQ_ERR_IO, -1, -1, "write failed (%s), the old file is intact: %s",
                        strerror(e), cq_path_brief(path, b, sizeof b));
        goto out;
    }
    /* make the rename durable; the file is already in place, so a directory that cannot
     * be synced (some file systems refuse) is not reported as a failed write */
    tmp[slash && slash != target ? dl : 0] = '\0';
    int dfd = open(slash ? (slash == target ? "/" : tmp) : ".", O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
out:
    free(real);
    free(tmp);
    return st;
}

/* ------------------------------------------------------- streamed outputs */

cq_status cq_out_open(cq_out *o, const char *path, cq_err *err) {
    if (!o || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(o, 0, sizeof *o);
    o->path = path;
    o->f = open_memstream(&o->buf, &o->len);
    if (!o->f) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    return CQ_OK;
}

cq_status cq_out_commit(cq_out *o, cq_err *err) {
    if (!o || !o->f) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "output not open");
    int bad = fclose(o->f) != 0;
    o->f = NULL;
    cq_status st = bad || !o->buf ? cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory")
                                  : cq_write_file_atomic(o->path, o->buf, o->len, err);
    free(o->buf);
    o->buf = NULL;
    return st;
}

void cq_out_abort(cq_out *o) {
    if (!o) return;
    if (o->f) fclose(o->f);
    free(o->buf);
    memset(o, 0, sizeof *o);
}

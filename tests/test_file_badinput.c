/* SPDX-License-Identifier: MIT */
/*
 * test_file_badinput.c - the bad-input matrix of the file layer
 * (include/cq_file.h, docs/FILE_IO.md) through every library reader and the
 * cache writer: a FIFO or device where a file is expected is refused at once
 * (an alarm turns a blocking reader into a failure), bounds are stated, cache
 * files and .npy are validated header first (a huge sparse file with a bad magic
 * costs 40 bytes of reading; a .npy never needs twice its size), saves keep an
 * existing file's mode or honour the umask, refuse non-regular targets, write
 * through symlinks, accept 255-byte file names, and errors keep their cause
 * visible next to a long path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cq_test.h"
#include "channelquant.h"
#include "cq_eval.h"
#include "cq_model.h"
#include "util/cache_testutil.h"

static char dir[] = "/tmp/cq_filebad_XXXXXX";

static void on_alarm(int sig) {
    (void)sig;
    static const char m[] = "test_file_badinput: a reader blocked (alarm): FAIL\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(1);
}

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

static cq_cache *small_cache(void) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 2, 16);
    cfg.key_codec = cfg.val_codec = CQ_CODEC_CQ4;
    cfg.group = 8;
    cq_cache *c = NULL;
    if (cq_cache_create(&cfg, &c, NULL)) return NULL;
    uint16_t K[10 * 2 * 16], V[10 * 2 * 16];
    cq_rng r;
    cq_rng_seed(&r, 3);
    ctu_fill_f16(&r, K, sizeof K / 2, 1.0f, 0);
    ctu_fill_f16(&r, V, sizeof V / 2, 1.0f, 0);
    if (cq_cache_append(c, 0, K, V, 10, NULL)) {
        cq_cache_free(c);
        return NULL;
    }
    return c;
}

static mode_t mode_of(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_mode & 07777 : (mode_t)-1;
}

/* ------------------------------------------------ non-regular inputs (5) */

static void fifo_readers(void) {
    char f[256];
    path_of(f, sizeof f, "fifo");
    CHECK(mkfifo(f, 0600) == 0, "mkfifo: %s", strerror(errno));
    signal(SIGALRM, on_alarm);
    alarm(30);
    const char *inputs[] = {f, "/dev/zero", "/dev/null", dir};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *p = inputs[i];
        cq_err e;
        cq_cache *c = NULL;
        CHECK(cq_cache_load(p, &c, &e) == CQ_ERR_IO && !c, "cache load %s: %s", p, e.msg);
        CHECK(strstr(e.msg, "not a regular file") != NULL, "cache load names it: %s", e.msg);
        cq_npy a;
        CHECK(cq_npy_load(p, 0, &a, &e) == CQ_ERR_IO, "npy %s: %s", p, e.msg);
        uint32_t *w = NULL;
        size_t n = 0;
        CHECK(cq_hex_load(p, 4, &w, &n, &e) == CQ_ERR_IO, "hex %s: %s", p, e.msg);
        uint8_t masks[16];
        CHECK(cq_mask_load(p, 1, 1, 16, masks, &e) == CQ_ERR_IO, "mask %s: %s", p, e.msg);
        cq_model *m = NULL;
        CHECK(cq_model_load(p, &m, &e) == CQ_ERR_IO && !m, "model %s: %s", p, e.msg);
        cq_tokenizer *t = NULL;
        CHECK(cq_tokenizer_load_llama2c(p, 32, &t, &e) == CQ_ERR_IO && !t, "tokenizer %s: %s", p,
              e.msg);
        cq_mc_set set;
        memset(&set, 0, sizeof set);
        CHECK(cq_mc_load_hellaswag(p, 10, &set, &e) == CQ_ERR_IO, "jsonl %s: %s", p, e.msg);
        char *buf = NULL;
        size_t len = 0;
        CHECK(cq_read_text(p, 1 << 20, &buf, &len, &e) == CQ_ERR_IO && !buf, "text %s: %s", p,
              e.msg);
    }
    alarm(0);
    unlink(f);
}

/* ------------------------------------------------ bounds and headers (2) */

static void bounded_reads(void) {
    char p[256];
    path_of(p, sizeof p, "text.txt");
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 100; i++) fputc('a', f);
    fclose(f);
    char *buf = NULL;
    size_t len = 0;
    cq_err e;
    CHECK(cq_read_file(p, 99, &buf, &len, &e) == CQ_ERR_RANGE && !buf, "over the bound: %s",
          e.msg);
    CHECK(strstr(e.msg, "limit of 99 bytes") != NULL, "the bound is in the message: %s", e.msg);
    CHECK(cq_read_file(p, 100, &buf, &len, &e) == CQ_OK && len == 100, "at the bound: %s", e.msg);
    free(buf);
    f = fopen(p, "ab");
    fputc(0, f);
    fclose(f);
    CHECK(cq_read_text(p, 1000, &buf, &len, &e) == CQ_ERR_FORMAT && !buf, "NUL in text: %s", e.msg);
    unlink(p);
}

/* A 1 TiB sparse file that is not a cache: refused after reading its header. */
static void cache_header_first(void) {
    char p[256];
    path_of(p, sizeof p, "huge.cqkv");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "create");
    if (fd < 0) return;
    int sparse = write(fd, "NOTACACHE", 9) == 9 && ftruncate(fd, (off_t)1 << 40) == 0;
    close(fd);
    if (sparse) {
        cq_cache *c = NULL;
        cq_err e;
        CHECK(cq_cache_load(p, &c, &e) == CQ_ERR_FORMAT && !c, "1 TiB non-cache: %s (%s)",
              cq_status_name(e.code), e.msg);
        CHECK(strstr(e.msg, "magic") != NULL, "refused for its magic: %s", e.msg);
        cq_cache_load_opts o = {4096, NULL};
        /* a real header whose size matches, over an explicit memory limit */
        cq_cache *s = small_cache();
        uint8_t *img = NULL;
        size_t n = 0;
        CHECK(s && cq_cache_save_mem(s, &img, &n, &e) == CQ_OK, "save_mem");
        if (img) {
            fd = open(p, O_WRONLY | O_TRUNC);
            CHECK(fd >= 0 && write(fd, img, n) == (ssize_t)n, "write image");
            if (fd >= 0) close(fd);
            o.max_bytes = n - 1;
            CHECK(cq_cache_load_ex(p, &o, &c, &e) == CQ_ERR_RANGE && !c, "file over the limit: %s",
                  e.msg);
            o.max_bytes = 0;
            CHECK(cq_cache_load_ex(p, &o, &c, &e) == CQ_OK, "the same file loads: %s", e.msg);
            cq_cache_free(c);
        }
        free(img);
        cq_cache_free(s);
    } else {
        printf("test_file_badinput: no sparse files here, 1 TiB case skipped\n");
    }
    unlink(p);
}

/* cq_npy_load holds the data once: a 32 MiB array loads under an address-space
 * limit 48 MiB above the current use (a whole-file buffer plus a copy would need 64).
 * Skipped under sanitizers, whose shadow memory defeats RLIMIT_AS. */
static void npy_single_copy(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    printf("test_file_badinput: npy address-space case skipped under a sanitizer\n");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    printf("test_file_badinput: npy address-space case skipped under a sanitizer\n");
#else
#define CQ_NPY_RLIMIT_CASE 1
#endif
#else
#define CQ_NPY_RLIMIT_CASE 1
#endif
#ifdef CQ_NPY_RLIMIT_CASE
    char p[256];
    path_of(p, sizeof p, "big.npy");
    const uint64_t n = 16u << 20; /* fp16: 32 MiB */
    uint64_t shape[1] = {n};
    cq_err e;
    uint16_t *z = calloc(n, 2);
    CHECK(z && cq_npy_save(p, CQ_NPY_F16, shape, 1, z, &e) == CQ_OK, "npy save: %s", e.msg);
    free(z);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) _exit(3);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (48u << 20);
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
        cq_npy a;
        cq_err ce;
        cq_status st = cq_npy_load(p, 0, &a, &ce);
        if (st) fprintf(stderr, "npy load under the limit: %s\n", ce.msg);
        _exit(st == CQ_OK && a.count == n ? 0 : 1);
    }
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid, "fork");
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) != 3, "child set-up");
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) != 1, "a 32 MiB .npy needs more than 48 MiB to load");
    unlink(p);
#endif
}

/* ------------------------------------------------- the writer (1, 6, 9) */

static void save_modes(void) {
    cq_cache *c = small_cache();
    CHECK(c != NULL, "cache");
    if (!c) return;
    char p[256];
    cq_err e;
    path_of(p, sizeof p, "new.cqkv");
    mode_t old = umask(077);
    CHECK(cq_cache_save(c, p, &e) == CQ_OK, "save: %s", e.msg);
    CHECK(mode_of(p) == 0600, "umask 077: new file mode %o, want 600", (unsigned)mode_of(p));
    unlink(p);
    umask(022);
    CHECK(cq_cache_save(c, p, &e) == CQ_OK, "save: %s", e.msg);
    CHECK(mode_of(p) == 0644, "umask 022: new file mode %o, want 644", (unsigned)mode_of(p));
    const mode_t keep[] = {0600, 0640, 0604, 0660};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        CHECK(chmod(p, keep[i]) == 0, "chmod");
        CHECK(cq_cache_save(c, p, &e) == CQ_OK, "save over: %s", e.msg);
        CHECK(mode_of(p) == keep[i], "existing mode %o became %o", (unsigned)keep[i],
              (unsigned)mode_of(p));
    }
    umask(old);
    unlink(p);
    cq_cache_free(c);
}

static void save_targets(void) {
    cq_cache *c = small_cache();
    if (!c) return;
    char p[256], t[256];
    cq_err e;
    struct stat sb;
    /* a FIFO is refused and stays a FIFO (a device node is the same case, not run here) */
    path_of(p, sizeof p, "out.fifo");
    CHECK(mkfifo(p, 0600) == 0, "mkfifo");
    CHECK(cq_cache_save(c, p, &e) == CQ_ERR_IO, "save onto a FIFO: %s", e.msg);
    CHECK(lstat(p, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    unlink(p);
    CHECK(cq_cache_save(c, dir, &e) == CQ_ERR_IO, "save onto a directory: %s", e.msg);
    /* a symlink is written through: the link stays, the file it names is replaced */
    path_of(t, sizeof t, "target.cqkv");
    path_of(p, sizeof p, "link.cqkv");
    FILE *f = fopen(t, "wb");
    fputs("old", f);
    fclose(f);
    CHECK(chmod(t, 0640) == 0, "chmod");
    CHECK(symlink("target.cqkv", p) == 0, "symlink");
    CHECK(cq_cache_save(c, p, &e) == CQ_OK, "save through a link: %s", e.msg);
    CHECK(lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode), "the link was replaced by a file");
    CHECK(mode_of(t) == 0640, "target mode kept");
    cq_cache *back = NULL;
    CHECK(cq_cache_load(t, &back, &e) == CQ_OK, "the link's target holds the cache: %s", e.msg);
    CHECK(back && cq_cache_compare(c, back, &e) == CQ_OK, "same cache");
    cq_cache_free(back);
    unlink(p);
    unlink(t);
    /* a dangling link is refused and left alone */
    CHECK(symlink("missing/none.cqkv", p) == 0, "symlink");
    CHECK(cq_cache_save(c, p, &e) == CQ_ERR_IO, "save through a dangling link: %s", e.msg);
    CHECK(lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode), "dangling link kept");
    unlink(p);
    cq_cache_free(c);
}

/* no temporary files left in the directory after failures and successes */
static int dir_has_temp(void) {
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        found |= strstr(de->d_name, "tmp") != NULL;
    if (d) closedir(d);
    return found;
}

static void long_names(void) {
    cq_cache *c = small_cache();
    if (!c) return;
    cq_err e;
    for (size_t n = 240; n <= 255; n += 5) { /* NAME_MAX is 255 */
        char name[256], p[600];
        memset(name, 'n', n);
        name[n] = '\0';
        memcpy(name + n - 5, ".cqkv", 5);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        CHECK(cq_cache_save(c, p, &e) == CQ_OK, "save, %zu-byte name: %s", n, e.msg);
        cq_cache *back = NULL;
        CHECK(cq_cache_load(p, &back, &e) == CQ_OK, "load, %zu-byte name: %s", n, e.msg);
        cq_cache_free(back);
        unlink(p);
    }
    /* the cause survives a long path */
    char p[900];
    int o = snprintf(p, sizeof p, "%s/missing/", dir);
    memset(p + o, 'd', 700);
    strcpy(p + o + 700, "/x.cqkv");
    CHECK(cq_cache_save(c, p, &e) == CQ_ERR_IO, "save into a missing directory");
    CHECK(strstr(e.msg, "No such file or directory") != NULL, "cause visible: %s", e.msg);
    cq_npy a;
    CHECK(cq_npy_load(p, 0, &a, &e) == CQ_ERR_IO && strstr(e.msg, "No such file") != NULL,
          "npy cause visible: %s", e.msg);
    CHECK(!dir_has_temp(), "a temporary file was left in the directory");
    cq_cache_free(c);
}

int main(void) {
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return cq_test_done("test_file_badinput");
    }
    fifo_readers();
    bounded_reads();
    cache_header_first();
    npy_single_copy();
    save_modes();
    save_targets();
    long_names();
    rmdir(dir);
    return cq_test_done("test_file_badinput");
}

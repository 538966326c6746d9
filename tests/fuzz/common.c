/*
 * common.c - helpers shared by the fuzz targets: input splitting and a
 * private scratch directory for the loaders that read files.
 */
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || data[i] == 0xFF) {
            part[n] = data + start;
            len[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static char scratch[64];

/* Remove the scratch tree (two levels: files and one level of directories). */
static void remove_tree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && depth < 2) remove_tree(path, depth + 1);
    }
    closedir(d);
    rmdir(dir);
}

static void cleanup(void) {
    if (scratch[0]) remove_tree(scratch, 0);
}

const char *fuzz_scratch_dir(void) {
    if (!scratch[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%.32s/cq-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            abort();
        }
        atexit(cleanup);
    }
    return scratch;
}

int fuzz_write(const char *dir, const char *name, const uint8_t *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int bad = fclose(f) != 0 || w != len;
    return bad ? -1 : 0;
}

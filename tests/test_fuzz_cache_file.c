/*
 * test_fuzz_cache_file.c - replays the seed corpus of the cache-file fuzzer
 * (tests/fuzz/corpus/cache_file/) through its entry point, so `make test`
 * (and `make SAN=1 test`) run every seed and every saved crash reproducer.
 * Seeds (seed_*) are valid files: they must load, and re-save to themselves.
 * Other files (reproducers) must simply be handled without error reports.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "fuzz/fuzz_cache_file.c"

#define CORPUS "tests/fuzz/corpus/cache_file"

int main(void) {
    DIR *d = opendir(CORPUS);
    CHECK(d != NULL, "corpus directory %s (tests run from the repo root)", CORPUS);
    if (!d) return cq_test_done("test_fuzz_cache_file");
    struct dirent *de;
    int files = 0, seeds = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", CORPUS, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        size_t got = fread(buf, 1, n > 0 ? (size_t)n : 0, f);
        fclose(f);
        files++;
        CHECK(LLVMFuzzerTestOneInput(buf, got) == 0, "%s: the loaded cache misbehaved", path);
        if (strncmp(de->d_name, "seed_", 5) == 0) {
            seeds++;
            cq_cache *c = NULL;
            cq_err e;
            CHECK(cq_cache_load_mem(buf, got, &c, &e) == CQ_OK, "%s: seed must load: %s", path,
                  e.msg);
            cq_cache_free(c);
        }
        free(buf);
    }
    closedir(d);
    CHECK(seeds >= 8, "only %d seeds found", seeds);
    printf("replayed %d corpus files (%d seeds)\n", files, seeds);
    return cq_test_done("test_fuzz_cache_file");
}

#include "CLibFuzzer.h"

#ifndef SIGIL_LIBFUZZER
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path, int (*callback)(const uint8_t *, size_t)) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "sigil-fuzz: cannot open %s\n", path);
        return 1;
    }
    size_t capacity = 4096, size = 0;
    uint8_t *data = malloc(capacity);
    size_t got;
    while (data != NULL && (got = fread(data + size, 1, capacity - size, file)) > 0) {
        size += got;
        if (size == capacity) {
            uint8_t *bigger = realloc(data, capacity *= 2);
            if (bigger == NULL) free(data);
            data = bigger;
        }
    }
    fclose(file);
    if (data == NULL) return 1;
    callback(data, size);
    free(data);
    return 0;
}

/// Replay: every argument not starting with '-' is a file, or a directory whose regular files are run.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *, size_t)) {
    int failures = 0, runs = 0;
    for (int i = 1; i < *argc; i++) {
        const char *path = (*argv)[i];
        if (path[0] == '-') continue;
        struct stat info;
        if (stat(path, &info) != 0) {
            fprintf(stderr, "sigil-fuzz: no such file or directory: %s\n", path);
            failures++;
            continue;
        }
        if (!S_ISDIR(info.st_mode)) {
            failures += run_file(path, callback);
            runs++;
            continue;
        }
        DIR *dir = opendir(path);
        if (dir == NULL) {
            failures++;
            continue;
        }
        struct dirent *entry;
        char child[4096];
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] == '.') continue;
            snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
            if (stat(child, &info) == 0 && S_ISREG(info.st_mode)) {
                failures += run_file(child, callback);
                runs++;
            }
        }
        closedir(dir);
    }
    fprintf(stderr, "sigil-fuzz: replayed %d input(s)\n", runs);
    return failures == 0 ? 0 : 1;
}
#endif

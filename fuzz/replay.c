/*
 * replay.c - run a libFuzzer target over saved inputs, without libFuzzer.
 *
 *     fuzz_recv_replay FILE_OR_DIR...
 *
 * Linked with one target (fuzz_recv.c or fuzz_names.c) by any compiler, so
 * the normal test suite replays the seed corpus (fuzz/corpus/<target>/) and
 * every input that ever crashed a target (fuzz/regressions/<target>/).  A
 * target reports a broken invariant with abort(), which fails the test.
 * Exit status 0 once every input ran; 1 if a file cannot be read or no
 * input was found.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    for (;;) {
        if (cap - len < 4096) {
            uint8_t *nb = (uint8_t *)realloc(buf, cap * 2 + 4096);
            if (nb == NULL) {
                fclose(f);
                free(buf);
                return -1;
            }
            buf = nb;
            cap = cap * 2 + 4096;
        }
        n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    /* An exact-size copy, so that AddressSanitizer sees any read past the
     * input's end, as it does under libFuzzer. */
    {
        uint8_t *exact = (uint8_t *)malloc(len > 0 ? len : 1);
        if (exact == NULL) {
            free(buf);
            return -1;
        }
        if (len > 0)
            memcpy(exact, buf, len);
        free(buf);
        printf("replay: %s (%lu bytes)\n", path, (unsigned long)len);
        fflush(stdout);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    return 1;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file in dir (not starting with '.'), in name order. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    int count = 0, rc;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open directory %s\n", dir);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char *path;
        if (de->d_name[0] == '.')
            continue;
        path = (char *)malloc(strlen(dir) + strlen(de->d_name) + 2);
        if (path == NULL)
            break;
        sprintf(path, "%s/%s", dir, de->d_name);
        if (is_dir(path)) {
            free(path);
            continue;
        }
        if (n == cap) {
            char **nn = (char **)realloc(names, (cap * 2 + 16) * sizeof(*nn));
            if (nn == NULL) {
                free(path);
                break;
            }
            names = nn;
            cap = cap * 2 + 16;
        }
        names[n++] = path;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n; i++) {
        rc = replay_file(names[i]);
        if (rc < 0)
            count = -1;
        else if (count >= 0)
            count += rc;
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    int i, total = 0, rc;

    setvbuf(stdout, NULL, _IONBF, 0);
    for (i = 1; i < argc; i++) {
        rc = is_dir(argv[i]) ? replay_dir(argv[i]) : replay_file(argv[i]);
        if (rc < 0)
            return 1;
        total += rc;
    }
    printf("replay: %d input(s), no invariant broken\n", total);
    return total > 0 ? 0 : 1;
}

/* The floor of a one-file backup (bench/backup-bench.sh, sparse rows; issue 23): what a correct
 * hs-backup must do for a 9 GiB sparse file with 1 MiB of data, done in C with nothing else.
 *
 *   sparse-floor MODE ARGS... [--report FILE]
 *
 * Modes (each one process; the bench times the process with the same harness as tar, and
 * --report appends "MODE microseconds" of the work alone, clock_gettime around it, so that the
 * process start is not counted twice when the parts are summed):
 *   none                   nothing: a C process start and exit
 *   read FILE              SEEK_DATA/SEEK_HOLE over FILE, pread of every data extent
 *   sha FILE               the same + SHA-256 of the data (hs_sha256_*: hs-backup's own SHA-NI
 *                          code, Sources/CCrypto/ccrypto.c, compiled in; libcrypto without SHA-NI)
 *   deflate1 FILE          the same + a gzip member of the data by libdeflate level 1 (the
 *                          compressor and level hs-backup uses for compressible data)
 *   store FILE             the same + a gzip member of stored deflate blocks (no compression:
 *                          what hs-backup writes for data its entropy probe calls incompressible;
 *                          the fastest output GNU tar, bsdtar and Python still read): CRC-32 + copy
 *   commit DEST KIND       the durable commit of one backup of ~1 MiB into a new DEST/b (see
 *                          commit() for the calls and what each fsync protects). KIND:
 *                            now       what hs-backup 0.4.0 does (6 fsyncs, lock and the index's
 *                                      own temp file + directory fsync included)
 *                            minimal   the fsyncs a correct commit needs: archive, manifest, index
 *                                      (one after the other), renames, one directory fsync
 *                            parallel  the same fsyncs, the three file fsyncs on three threads
 *                            first     parallel, and DEST and DEST/b made durable after their
 *                                      mkdir (their parents fsynced), as a correct first backup
 *                                      into a new DEST must (hs-backup since da54556: until the
 *                                      parent's entry is on stable storage, a power loss can take
 *                                      the new directory away with the backup in it; XFS, btrfs)
 *   archsha FILE           store, and the SHA-256 of the stored gzip member: the archive's own
 *                          hash, which the index records (copy and verify compare it)
 *   all DEST FILE          read + SHA-256 + stored gzip + a minimal commit of the result, in one
 *                          process: a C program doing everything a correct backup of FILE must
 * Measurement only; nothing here is used by the tools. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ccrypto.h"

static void die(const char *what, const char *path) {
    fprintf(stderr, "sparse-floor: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* The data extents of FILE, read (pread) into one buffer: the calls hs-backup's sparse path makes. */
static uint8_t *read_extents(const char *path, size_t *n) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) die("open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat", path);
    size_t cap = 2u << 20, len = 0;
    uint8_t *buf = malloc(cap);
    off_t pos = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) { if (errno == ENXIO) break; die("SEEK_DATA", path); }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) die("SEEK_HOLE", path);
        size_t want = (size_t)(hole - data);
        if (len + want > cap) { cap = len + want; buf = realloc(buf, cap); }
        size_t got = 0;
        while (got < want) {
            ssize_t r = pread(fd, buf + len + got, want - got, data + (off_t)got);
            if (r < 0) die("pread", path);
            if (r == 0) break;
            got += (size_t)r;
        }
        len += got;
        pos = hole;
    }
    close(fd);
    *n = len;
    return buf;
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[32]) {
    if (hs_sha256_native_available()) {
        hs_sha256_ctx c;
        hs_sha256_init(&c);
        hs_sha256_update(&c, p, n);
        hs_sha256_final(&c, out);
        return;
    }
    const struct hs_libcrypto *l = hs_libcrypto();
    if (l == NULL) { fprintf(stderr, "sparse-floor: %s\n", hs_libcrypto_error()); exit(1); }
    EVP_MD_CTX *c = l->EVP_MD_CTX_new();
    unsigned len = 32;
    if (c == NULL || l->EVP_DigestInit_ex(c, l->EVP_sha256(), NULL) != 1 || l->EVP_DigestUpdate(c, p, n) != 1
        || l->EVP_DigestFinal_ex(c, out, &len) != 1) { fprintf(stderr, "sparse-floor: libcrypto SHA-256 failed\n"); exit(1); }
    l->EVP_MD_CTX_free(c);
}

/* A gzip member of p: libdeflate at `level`, or stored blocks (level 0: built here, as
 * hs-backup's encoder builds them: 65,535-byte stored blocks, CRC-32, ISIZE). */
static size_t gzip_member(const uint8_t *p, size_t n, int level, uint8_t *out, size_t cap) {
    static const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memcpy(out, header, 10);
    size_t o = 10;
    if (level > 0) {
        struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
        size_t z = libdeflate_deflate_compress(c, p, n, out + o, cap - o - 8);
        if (z == 0) { fprintf(stderr, "sparse-floor: libdeflate output did not fit\n"); exit(1); }
        libdeflate_free_compressor(c);
        o += z;
    } else {
        size_t i = 0;
        do {
            size_t k = n - i > 65535 ? 65535 : n - i;
            out[o++] = i + k == n ? 1 : 0;
            out[o++] = k & 0xff; out[o++] = k >> 8;
            out[o++] = ~k & 0xff; out[o++] = (~k >> 8) & 0xff;
            memcpy(out + o, p + i, k);
            o += k; i += k;
        } while (i < n);
    }
    uint32_t crc = libdeflate_crc32(0, p, n), size = (uint32_t)n;
    memcpy(out + o, &crc, 4); memcpy(out + o + 4, &size, 4);
    return o + 8;
}

struct fsync_job { int fd; const char *path; pthread_t t; };
static void *fsync_thread(void *a) {
    struct fsync_job *j = a;
    if (fsync(j->fd) != 0) die("fsync", j->path);
    return NULL;
}

static int create(const char *path, int extra) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | extra, 0600);
    if (fd < 0) die("create", path);
    return fd;
}
static void write_all(int fd, const void *p, size_t n, const char *path) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) die("write", path);
        b += w; n -= (size_t)w;
    }
}
static void sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die("open directory", path);
    if (fsync(fd) != 0) die("fsync directory", path);
    close(fd);
}

/* One backup's commit into a new DEST/b, as hs-backup makes it on a local destination:
 *   mkdir DEST, DEST/b (a first backup; 0700)
 *   lock: O_CREAT|O_EXCL "DEST/b/lock" with its JSON holder; hs-backup fsyncs it ("now") so
 *     that after a crash the next run finds a readable holder (a dead pid: taken over at once)
 *     rather than an empty file (taken over after 2 s) - a convenience, not a durability need
 *   <id>.tar.gz.partial, <id>.manifest.partial, <id>.index.partial written, each fsynced:
 *     its bytes are durable before any of them gets its final name (the rename of the manifest
 *     is the commit: a manifest must never name data that a crash can take away)
 *   "now" only: the index goes through its own temp file, fsync, rename to .partial and a
 *     directory fsync (AtomicFile), before the manifest's rename
 *   rename manifest (the commit), archive, index to their final names
 *   fsync DEST/b: the renames are durable before the run reports success ("latest" is then
 *     this backup after any crash)
 *   unlink the lock (no fsync: a lock lost in a crash is a stale lock, taken over) */
static void commit(const char *dest, const char *kind, const uint8_t *archive, size_t archive_n) {
    int now = strcmp(kind, "now") == 0, first = strcmp(kind, "first") == 0;
    int parallel = first || strcmp(kind, "parallel") == 0;
    if (!now && !parallel && strcmp(kind, "minimal") != 0) { fprintf(stderr, "sparse-floor: commit KIND: now, minimal, parallel or first\n"); exit(2); }
    char set[4096], p[6][4200], up[4096];
    snprintf(set, sizeof set, "%s/b", dest);
    snprintf(up, sizeof up, "%s", dest);
    char *slash = strrchr(up, '/');
    if (slash == NULL) snprintf(up, sizeof up, ".");
    else if (slash == up) up[1] = 0;
    else *slash = 0;
    int made = mkdir(dest, 0700) == 0;
    if (!made && errno != EEXIST) die("mkdir", dest);
    if (first && made) sync_dir(up);
    if (mkdir(set, 0700) != 0) die("mkdir", set);
    if (first) sync_dir(dest);
    const char *names[6] = {"lock", "ID.tar.gz.partial", "ID.manifest.partial", "ID.index.partial", "ID.tar.gz", "ID.manifest"};
    for (int i = 0; i < 6; i++) snprintf(p[i], sizeof p[i], "%s/%s", set, names[i]);
    static const char holder[] = "{\"host\":\"floor\",\"pid\":12345,\"started\":1765000000.123,\"operation\":\"backup\"}";
    int lock = open(p[0], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (lock < 0) die("create", p[0]);
    write_all(lock, holder, sizeof holder - 1, p[0]);
    if (now && fsync(lock) != 0) die("fsync", p[0]);
    close(lock);
    static uint8_t manifest[600], index[400];
    memset(manifest, 'm', sizeof manifest); memset(index, 'i', sizeof index);
    struct fsync_job jobs[3] = {{create(p[1], 0), p[1]}, {create(p[2], 0), p[2]}, {0, p[3]}};
    write_all(jobs[0].fd, archive, archive_n, p[1]);
    write_all(jobs[1].fd, manifest, sizeof manifest, p[2]);
    char tmp[4300], idx[4200];
    snprintf(idx, sizeof idx, "%s/ID.index", set);
    if (now) {
        /* archive and manifest fsynced as the run ends, then the index through AtomicFile */
        if (fsync(jobs[0].fd) != 0) die("fsync", p[1]);
        if (fsync(jobs[1].fd) != 0) die("fsync", p[2]);
        snprintf(tmp, sizeof tmp, "%s.tmp-1", p[3]);
        int fd = create(tmp, 0);
        write_all(fd, index, sizeof index, tmp);
        if (fsync(fd) != 0) die("fsync", tmp);
        close(fd);
        if (rename(tmp, p[3]) != 0) die("rename", tmp);
        sync_dir(set);
    } else {
        jobs[2].fd = create(p[3], 0);
        write_all(jobs[2].fd, index, sizeof index, p[3]);
        if (parallel) {
            for (int i = 1; i < 3; i++) pthread_create(&jobs[i].t, NULL, fsync_thread, &jobs[i]);
            fsync_thread(&jobs[0]);
            for (int i = 1; i < 3; i++) pthread_join(jobs[i].t, NULL);
        } else {
            for (int i = 0; i < 3; i++) fsync_thread(&jobs[i]);
        }
        close(jobs[2].fd);
    }
    close(jobs[0].fd); close(jobs[1].fd);
    if (rename(p[2], p[5]) != 0) die("rename", p[2]);
    if (rename(p[1], p[4]) != 0) die("rename", p[1]);
    if (rename(p[3], idx) != 0) die("rename", p[3]);
    sync_dir(set);
    if (unlink(p[0]) != 0) die("unlink", p[0]);
}

int main(int argc, char **argv) {
    const char *report = NULL;
    if (argc >= 3 && strcmp(argv[argc - 2], "--report") == 0) { report = argv[argc - 1]; argc -= 2; }
    if (argc < 2) { fprintf(stderr, "usage: sparse-floor MODE ARGS... [--report FILE] (see bench/sparse-floor.c)\n"); return 2; }
    const char *mode = argv[1];
    double t0 = now_us();
    uint8_t digest[32] = {0};
    size_t n = 0, z = 0;
    uint8_t *data = NULL, *out = NULL;
    if (strcmp(mode, "none") == 0) {
    } else if (argc == 3 && (strcmp(mode, "read") == 0 || strcmp(mode, "sha") == 0 || strcmp(mode, "deflate1") == 0 || strcmp(mode, "store") == 0)) {
        data = read_extents(argv[2], &n);
        if (strcmp(mode, "sha") == 0) sha256(data, n, digest);
        if (strcmp(mode, "deflate1") == 0 || strcmp(mode, "store") == 0) {
            out = malloc(n + n / 1000 + 4096);
            z = gzip_member(data, n, strcmp(mode, "store") == 0 ? 0 : 1, out, n + n / 1000 + 4096);
        }
    } else if (argc == 4 && strcmp(mode, "commit") == 0) {
        static uint8_t archive[1049600];
        memset(archive, 0xa5, sizeof archive);
        t0 = now_us();  /* the buffer's page faults are not the commit's */
        commit(argv[2], argv[3], archive, sizeof archive);
    } else if (argc == 3 && strcmp(mode, "archsha") == 0) {
        data = read_extents(argv[2], &n);
        sha256(data, n, digest);
        out = malloc(n + n / 1000 + 4096);
        z = gzip_member(data, n, 0, out, n + n / 1000 + 4096);
        uint8_t archive_digest[32];
        sha256(out, z, archive_digest);
        digest[1] ^= archive_digest[0];
    } else if (argc == 4 && strcmp(mode, "all") == 0) {
        data = read_extents(argv[3], &n);
        sha256(data, n, digest);
        out = malloc(n + n / 1000 + 4096);
        z = gzip_member(data, n, 0, out, n + n / 1000 + 4096);
        commit(argv[2], "minimal", out, z);
    } else {
        fprintf(stderr, "sparse-floor: unknown mode or arguments (see bench/sparse-floor.c)\n");
        return 2;
    }
    double us = now_us() - t0;
    if (report) {
        FILE *f = fopen(report, "a");
        if (f == NULL) die("open", report);
        fprintf(f, "%s%s%s %.0f\n", mode, argc == 4 && strcmp(mode, "commit") == 0 ? "-" : "",
                argc == 4 && strcmp(mode, "commit") == 0 ? argv[3] : "", us);
        fclose(f);
    }
    /* keep the results observable (the compiler must not drop the work) */
    if (n > 0 && (digest[0] == 0x100 || z == 1)) printf("%zu\n", n);
    free(data); free(out);
    return 0;
}

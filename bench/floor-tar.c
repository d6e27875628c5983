// The floor of a restore that must decompress and parse: the decompressed tar stream comes in
// on stdin (`pigz -dc X.tar.gz | floor-tar TARGET/ THREADS`: zlib's inflate, as in hs-restore,
// in its own process, as `tar -xzf` runs gzip; GNU gzip's inflate takes about twice zlib's CPU),
// one thread parses the headers (ustar, GNU long names 'L', pax 'x'
// path/mtime/size/uid/gid records) and makes each directory as it comes, and THREADS threads
// create the files from batches of up to 200 (content copied out of the stream): openat
// (O_CREAT|O_EXCL, mode), write, fchown only when the owner is not root, futimens, close; at the
// end directory modes and times, deepest first. No checksums of content, no path checks, no
// symlink safety, no hardlinks or sparse files: a restore tool that checks all that cannot be
// faster than this on the same file system with the same decompression. The timed part is
// everything from the first byte read to the last directory time set (printed in seconds).
//
//   cc -O2 -pthread -o floor-tar bench/floor-tar.c
//   pigz -dc X.tar.gz | floor-tar TARGET/ THREADS      (run with umask 0)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct { char *path; char *data; size_t n; mode_t mode; struct timespec mt; uid_t u; gid_t g; } File;
typedef struct { File *f; size_t n; } Batch;
typedef struct { char *path; mode_t mode; struct timespec mt; } Dir;

enum { BATCH_FILES = 200, BATCH_BYTES = 1 << 20, QUEUE = 32 };
static Batch q[QUEUE];
static size_t qhead, qlen;
static int qdone;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t notEmpty = PTHREAD_COND_INITIALIZER, notFull = PTHREAD_COND_INITIALIZER;
static const char *dst;
static size_t dstlen;

static void die(const char *what, const char *p) { fprintf(stderr, "floor-tar: %s %s: %s\n", what, p ? p : "", strerror(errno)); exit(1); }

static void put(Batch b) {
  pthread_mutex_lock(&mu);
  while (qlen == QUEUE) pthread_cond_wait(&notFull, &mu);
  q[(qhead + qlen++) % QUEUE] = b;
  pthread_cond_signal(&notEmpty);
  pthread_mutex_unlock(&mu);
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (qlen == 0 && !qdone) pthread_cond_wait(&notEmpty, &mu);
    if (qlen == 0) { pthread_mutex_unlock(&mu); return 0; }
    Batch b = q[qhead]; qhead = (qhead + 1) % QUEUE; qlen--;
    pthread_cond_signal(&notFull);
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < b.n; i++) {
      File *e = &b.f[i];
      int fd = open(e->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, e->mode);
      if (fd < 0) die("create", e->path);
      if (e->n && write(fd, e->data, e->n) != (ssize_t)e->n) die("write", e->path);
      if ((e->u != 0 || e->g != 0) && fchown(fd, e->u, e->g) != 0) die("fchown", e->path);
      struct timespec ts[2] = { e->mt, e->mt };
      if (futimens(fd, ts) != 0) die("futimens", e->path);
      close(fd);
      free(e->path); free(e->data);
    }
    free(b.f);
  }
}

// stdin, buffered: `need(n)` makes n bytes contiguous at `buf + pos` (0 at the end of input).
static char *buf;
static size_t cap = 8 << 20, pos, len;
static int need(size_t n) {
  if (len - pos >= n) return 1;
  if (n > cap / 2) { cap = n * 2; }
  char *nb = malloc(cap);
  if (!nb) die("malloc", 0);
  memcpy(nb, buf + pos, len - pos); free(buf); buf = nb; len -= pos; pos = 0;
  while (len < n) {
    ssize_t r = read(0, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("read", "stdin");
    if (r == 0) return 0;
    len += r;
  }
  return 1;
}

static unsigned long long octal(const char *p, size_t n) {
  if ((unsigned char)p[0] & 0x80) { errno = EINVAL; die("base-256 number (not supported)", 0); }
  unsigned long long v = 0;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == 0)) i++;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) v = v * 8 + (p[i] - '0');
  return v;
}

static char *joined(const char *name, size_t n) {
  while (n >= 2 && name[0] == '.' && name[1] == '/') { name += 2; n -= 2; }
  char *s = malloc(dstlen + n + 1);
  memcpy(s, dst, dstlen); memcpy(s + dstlen, name, n); s[dstlen + n] = 0;
  while (dstlen + n > dstlen && s[dstlen + n - 1] == '/') s[dstlen + --n] = 0;
  return s;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: pigz -dc X.tar.gz | floor-tar TARGET/ THREADS\n"); return 2; }
  dst = argv[1]; dstlen = strlen(dst);
  int threads = atoi(argv[2]);
  if (threads < 1 || threads > 64) { fprintf(stderr, "THREADS: 1..64\n"); return 2; }
  umask(0);
  buf = malloc(cap);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  pthread_t th[64];
  for (int i = 0; i < threads; i++) pthread_create(&th[i], 0, worker, 0);
  Dir *dirs = 0; size_t ndirs = 0, dcap = 0, files = 0;
  Batch cur = { malloc(BATCH_FILES * sizeof(File)), 0 };
  size_t curBytes = 0;
  char *longName = 0; size_t longLen = 0;
  char *paxPath = 0; size_t paxPathLen = 0;
  struct timespec paxMt = { -1, 0 };
  long long paxSize = -1;
  for (;;) {
    if (!need(512)) { errno = EPIPE; die("input ends without the end-of-archive blocks", 0); }
    char h[512];  // a copy: `need` below may move the buffer
    memcpy(h, buf + pos, 512);
    int zero = 1;
    for (int i = 0; i < 512 && zero; i++) zero = h[i] == 0;
    if (zero) break;
    char type = h[156];
    unsigned long long size = octal(h + 124, 12);
    size_t stored = (size_t)size;
    pos += 512;
    size_t padded = (stored + 511) / 512 * 512;
    if (!need(padded)) { errno = EPIPE; die("input truncated", 0); }
    char *data = buf + pos;
    if (type == 'L') {
      free(longName); longLen = strnlen(data, stored); longName = malloc(longLen); memcpy(longName, data, longLen);
    } else if (type == 'x') {
      // "LEN key=value\n" records
      size_t i = 0;
      while (i < stored) {
        size_t reclen = strtoul(data + i, 0, 10);
        if (reclen == 0 || i + reclen > stored) { errno = EINVAL; die("bad pax record", 0); }
        char *k = memchr(data + i, ' ', reclen) + 1, *eq = memchr(k, '=', data + i + reclen - k);
        char *v = eq + 1; size_t vl = data + i + reclen - 1 - v;
        size_t kl = eq - k;
        if (kl == 4 && !memcmp(k, "path", 4)) { free(paxPath); paxPath = malloc(vl); memcpy(paxPath, v, vl); paxPathLen = vl; }
        else if (kl == 5 && !memcmp(k, "mtime", 5)) {
          paxMt.tv_sec = strtoll(v, 0, 10); paxMt.tv_nsec = 0;
          char *dot = memchr(v, '.', vl);
          if (dot) { long ns = 0; int d = 0; for (char *c = dot + 1; c < v + vl && d < 9; c++, d++) ns = ns * 10 + (*c - '0'); while (d++ < 9) ns *= 10; paxMt.tv_nsec = ns; }
        } else if (kl == 4 && !memcmp(k, "size", 4)) paxSize = strtoll(v, 0, 10);
        i += reclen;
      }
    } else if (type == 'g') {
    } else {
      if (paxSize >= 0) { stored = paxSize; padded = (stored + 511) / 512 * 512; if (!need(padded)) { errno = EPIPE; die("input truncated", 0); } data = buf + pos; }
      char *path = paxPath ? joined(paxPath, paxPathLen) : longName ? joined(longName, longLen) : joined(h, strnlen(h, 100));
      if (!paxPath && !longName && h[345] && !memcmp(h + 257, "ustar\0", 6)) {  // ustar prefix
        size_t pl = strnlen(h + 345, 155), nl = strnlen(h, 100);
        char tmp[256]; memcpy(tmp, h + 345, pl); tmp[pl] = '/'; memcpy(tmp + pl + 1, h, nl);
        free(path); path = joined(tmp, pl + 1 + nl);
      }
      mode_t mode = octal(h + 100, 8) & 07777;
      struct timespec mt = paxMt.tv_sec >= 0 ? paxMt : (struct timespec){ (time_t)octal(h + 136, 12), 0 };
      uid_t u = octal(h + 108, 8); gid_t g = octal(h + 116, 8);
      if (type == '5') {
        if (strlen(path) > dstlen && mkdir(path, 0700) != 0 && errno != EEXIST) die("mkdir", path);
        if (ndirs == dcap) { dcap = dcap ? dcap * 2 : 1024; dirs = realloc(dirs, dcap * sizeof(Dir)); }
        dirs[ndirs++] = (Dir){ path, mode, mt };
      } else if (type == '0' || type == 0) {
        File *f = &cur.f[cur.n++];
        *f = (File){ path, malloc(stored ? stored : 1), stored, mode, mt, u, g };
        memcpy(f->data, data, stored);
        curBytes += stored; files++;
        if (cur.n == BATCH_FILES || curBytes >= BATCH_BYTES) { put(cur); cur = (Batch){ malloc(BATCH_FILES * sizeof(File)), 0 }; curBytes = 0; }
      } else if (type == '2') {
        char lt[101]; memcpy(lt, h + 157, 100); lt[100] = 0;
        if (symlink(lt, path) != 0) die("symlink", path);
        free(path);
      } else {
        errno = ENOTSUP; fprintf(stderr, "floor-tar: entry type '%c' (not supported)\n", type); return 1;
      }
      free(longName); longName = 0; free(paxPath); paxPath = 0; paxMt.tv_sec = -1; paxSize = -1;
    }
    pos += padded;
  }
  if (cur.n) put(cur); else free(cur.f);
  pthread_mutex_lock(&mu); qdone = 1; pthread_cond_broadcast(&notEmpty); pthread_mutex_unlock(&mu);
  for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
  for (size_t i = ndirs; i-- > 0;) {  // deepest first (the stream is in pre-order)
    if (strlen(dirs[i].path) <= dstlen) continue;  // the archive's own "." entry
    struct timespec ts[2] = { dirs[i].mt, dirs[i].mt };
    if (chmod(dirs[i].path, dirs[i].mode) != 0 || utimensat(AT_FDCWD, dirs[i].path, ts, AT_SYMLINK_NOFOLLOW) != 0) die("chmod/utimensat", dirs[i].path);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.2f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9);
  fprintf(stderr, "%zu files, %zu directories created with %d threads\n", files, ndirs, threads);
  return 0;
}

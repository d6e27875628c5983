// The floor of any restore of a tree on this machine: create its files with the fewest system
// calls and nothing else to do. The tree's content is read into memory first (not timed); then
// the directories are made (one thread), and the files are created by T threads, each taking
// the next run of ~200 entries: openat(O_CREAT|O_EXCL, mode), write, fchown only when the owner
// is not root, futimens, close; then directory modes and times. No decompression, no parsing,
// no checks: a restore tool cannot be faster than this on the same file system.
//
//
// With a fourth argument, a shell command (e.g. 'igzip -dc X.tar.gz'), that command runs at the
// same time, from the start of the timed part, its output to /dev/null, and the timed part
// ends when both are done: the true lower bound of restoring X.tar.gz here, which must both
// inflate the archive and create the files on the same cores.
//
//   cc -O2 -pthread -o create-floor bench/create-floor.c
//   create-floor SOURCE/ TARGET/ THREADS ['INFLATE COMMAND']  (run with umask 0; prints the timed part)
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct { char *path; char *data; size_t n; int dir; mode_t mode; struct timespec mt; uid_t u; gid_t g; } Entry;
static Entry *es;
static size_t ne, cap, srclen;
static const char *dst;
static size_t *starts, nunits, nextu;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int load(const char *p, const struct stat *st, int fl, struct FTW *f) {
  (void)fl; (void)f;
  if (S_ISLNK(st->st_mode)) return 0;
  if (ne == cap) { cap = cap ? cap * 2 : 1024; es = realloc(es, cap * sizeof(Entry)); if (!es) { perror("realloc"); exit(1); } }
  Entry *e = &es[ne++];
  memset(e, 0, sizeof *e);
  e->path = strdup(p + srclen); e->dir = S_ISDIR(st->st_mode); e->mode = st->st_mode & 07777;
  e->mt = st->st_mtim; e->u = st->st_uid; e->g = st->st_gid;
  if (!e->dir) {
    e->n = st->st_size; e->data = malloc(e->n + 1);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || read(fd, e->data, e->n) != (ssize_t)e->n) { perror(p); exit(1); }
    close(fd);
  }
  return 0;
}

static void *worker(void *arg) {
  (void)arg;
  char buf[8192];
  for (;;) {
    pthread_mutex_lock(&mu); size_t u = nextu++; pthread_mutex_unlock(&mu);
    if (u >= nunits) return 0;
    for (size_t i = starts[u]; i < starts[u + 1]; i++) {
      Entry *e = &es[i];
      if (e->dir) continue;
      snprintf(buf, sizeof buf, "%s%s", dst, e->path);
      int fd = open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, e->mode);
      if (fd < 0) { perror(buf); exit(1); }
      if (write(fd, e->data, e->n) != (ssize_t)e->n) { perror("write"); exit(1); }
      if ((e->u != 0 || e->g != 0) && fchown(fd, e->u, e->g) != 0) { perror("fchown"); exit(1); }
      struct timespec ts[2] = { e->mt, e->mt };
      if (futimens(fd, ts) != 0) { perror("futimens"); exit(1); }
      close(fd);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) { fprintf(stderr, "usage: create-floor SOURCE/ TARGET/ THREADS ['INFLATE COMMAND']\n"); return 2; }
  const char *src = argv[1]; srclen = strlen(src); dst = argv[2];
  int threads = atoi(argv[3]);
  if (threads < 1 || threads > 64) { fprintf(stderr, "THREADS: 1..64\n"); return 2; }
  umask(0);
  if (nftw(src, load, 64, FTW_PHYS) != 0) { perror("nftw"); return 1; }  // pre-order
  if (ne < 2) { fprintf(stderr, "%s: nothing to create (a link? give the real directory)\n", src); return 1; }
  starts = malloc((ne + 2) * sizeof(size_t));
  starts[nunits++] = 0;
  for (size_t i = 1; i < ne; i++) if (es[i].dir && i - starts[nunits - 1] > 200) starts[nunits++] = i;
  starts[nunits] = ne;
  struct timespec a, b;
  struct rusage ra, rb;
  getrusage(RUSAGE_SELF, &ra);
  clock_gettime(CLOCK_MONOTONIC, &a);
  pid_t inflater = 0;
  if (argc == 5) {
    extern char **environ;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *args[] = { "sh", "-c", argv[4], 0 };
    int rc = posix_spawnp(&inflater, "sh", &fa, 0, args, environ);
    if (rc != 0) { fprintf(stderr, "cannot start sh -c '%s': %s\n", argv[4], strerror(rc)); return 1; }
  }
  char buf[8192];
  mkdir(dst, 0755);
  for (size_t i = 0; i < ne; i++) if (es[i].dir) { snprintf(buf, sizeof buf, "%s%s", dst, es[i].path); mkdir(buf, 0700); }
  pthread_t th[64];
  for (int i = 0; i < threads; i++) pthread_create(&th[i], 0, worker, 0);
  for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
  for (size_t i = ne; i-- > 0;) if (es[i].dir) {  // deepest first
    snprintf(buf, sizeof buf, "%s%s", dst, es[i].path);
    struct timespec ts[2] = { es[i].mt, es[i].mt };
    if (chmod(buf, es[i].mode) != 0 || utimensat(AT_FDCWD, buf, ts, AT_SYMLINK_NOFOLLOW) != 0) { perror(buf); return 1; }
  }
  if (inflater > 0) {
    int st;
    if (waitpid(inflater, &st, 0) != inflater || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "the inflate command '%s' failed\n", argv[4]);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.2f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9);
  getrusage(RUSAGE_SELF, &rb);
#define SECS(t) ((t).tv_sec + (t).tv_usec * 1e-6)
  fprintf(stderr, "%zu entries created with %d threads; the timed part: user %.2f s, system %.2f s, context switches %ld voluntary, %ld involuntary\n",
          ne, threads, SECS(rb.ru_utime) - SECS(ra.ru_utime), SECS(rb.ru_stime) - SECS(ra.ru_stime),
          rb.ru_nvcsw - ra.ru_nvcsw, rb.ru_nivcsw - ra.ru_nivcsw);
  return 0;
}

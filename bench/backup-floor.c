// The floor of any backup of a tree on this machine: only the system calls a backup must make
// per entry, nothing kept, nothing written, no archive, no hashing, no compression. Directories
// are read with getdents64 (32 KiB buffer) and fstat'ed through their descriptor; each regular
// file is reached through its directory's descriptor:
//   read:       openat(dir, name, O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC|O_NOATIME),
//               fstat, read until st_size bytes (or EOF), close   (a full backup)
//   read-xattr: the same plus flistxattr on the open file         (a full backup that keeps xattrs)
//   stat:       fstatat(dir, name, AT_SYMLINK_NOFOLLOW) per entry  (a no-change run: what changed)
// T threads take directories from one shared stack (a directory's subdirectories are pushed as
// its entries are read), so the walk itself is split, as the backup's walkers split it. The
// directories are opened by full path (10,100 opens on the 1M stress tree against 1,000,000 files:
// noise); every file is opened relative to its directory's descriptor, as the backup does.
// A backup tool cannot do less than this per file; compare both tools against the same reference.
//
//   cc -O2 -pthread -o backup-floor bench/backup-floor.c
//   backup-floor ROOT THREADS read|read-xattr|stat   (prints the timed wall seconds; counts on stderr)
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

enum { READ, READ_XATTR, STAT };
static int mode;
static char **stack;
static size_t depth, cap;
static int busy;  // threads holding a directory (the walk ends when none does and the stack is empty)
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long long files, dirs, bytes;

static void push(char *path) {  // under mu
  if (depth == cap) { cap = cap ? cap * 2 : 4096; stack = realloc(stack, cap * sizeof *stack); if (!stack) { perror("realloc"); exit(1); } }
  stack[depth++] = path;
}

static void die(const char *what, const char *path) { fprintf(stderr, "%s %s: %s\n", what, path, strerror(errno)); exit(1); }

static void walk(const char *path, char *dents, char *data, size_t datacap, char *xbuf, unsigned long long *nf, unsigned long long *nb) {
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) die("open", path);
  struct stat st;
  if (fstat(dfd, &st) != 0) die("fstat", path);
  size_t plen = strlen(path);
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, dents, 32768);
    if (n < 0) die("getdents64", path);
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(dents + off);
      off += d->d_reclen;
      const char *name = d->d_name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      unsigned char type = d->d_type;
      if (mode == STAT || type == DT_UNKNOWN) {
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) die("fstatat", name);
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type == DT_DIR) {
        size_t k = strlen(name);
        char *sub = malloc(plen + k + 2);
        if (!sub) { perror("malloc"); exit(1); }
        memcpy(sub, path, plen); sub[plen] = '/'; memcpy(sub + plen + 1, name, k + 1);
        pthread_mutex_lock(&mu); push(sub); pthread_cond_signal(&cv); pthread_mutex_unlock(&mu);
        continue;
      }
      if (type != DT_REG) continue;
      (*nf)++;
      if (mode == STAT) continue;
      int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | O_NOATIME);
      if (fd < 0 && errno == EPERM) fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) die("openat", name);
      if (fstat(fd, &st) != 0) die("fstat", name);
      off_t left = st.st_size;
      while (left > 0) {
        ssize_t r = read(fd, data, left < (off_t)datacap ? (size_t)left : datacap);
        if (r < 0) die("read", name);
        if (r == 0) break;
        left -= r; *nb += (unsigned long long)r;
      }
      if (mode == READ_XATTR && flistxattr(fd, xbuf, 65536) < 0 && errno != ENOTSUP) die("flistxattr", name);
      close(fd);
    }
  }
  close(dfd);
}

static void *worker(void *arg) {
  (void)arg;
  char *dents = malloc(32768), *xbuf = malloc(65536);
  size_t datacap = 1 << 20;
  char *data = malloc(datacap);
  unsigned long long nf = 0, nb = 0, nd = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (depth == 0 && busy > 0) pthread_cond_wait(&cv, &mu);
    if (depth == 0) { pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu); break; }
    char *path = stack[--depth];
    busy++;
    pthread_mutex_unlock(&mu);
    walk(path, dents, data, datacap, xbuf, &nf, &nb);
    free(path); nd++;
    pthread_mutex_lock(&mu);
    busy--;
    if (busy == 0 && depth == 0) pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_lock(&mu); files += nf; bytes += nb; dirs += nd; pthread_mutex_unlock(&mu);
  free(dents); free(xbuf); free(data);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: backup-floor ROOT THREADS read|read-xattr|stat\n"); return 2; }
  int threads = atoi(argv[2]);
  if (threads < 1 || threads > 64) { fprintf(stderr, "THREADS: 1..64\n"); return 2; }
  if (!strcmp(argv[3], "read")) mode = READ;
  else if (!strcmp(argv[3], "read-xattr")) mode = READ_XATTR;
  else if (!strcmp(argv[3], "stat")) mode = STAT;
  else { fprintf(stderr, "mode: read, read-xattr or stat\n"); return 2; }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char *root = strdup(argv[1]);
  push(root);
  pthread_t th[64];
  for (int i = 0; i < threads; i++) pthread_create(&th[i], 0, worker, 0);
  for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9);
  fprintf(stderr, "%llu directories, %llu files, %llu bytes read, %d threads, %s\n", dirs, files, bytes, threads, argv[3]);
  return 0;
}

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <errno.h>
#include <malloc.h>
#include <spawn.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include "cshims.h"

int cshims_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cshims_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

#ifndef SYS_listxattrat
#if defined(__x86_64__) || defined(__aarch64__)
#define SYS_listxattrat 465
#endif
#endif

long cshims_listxattrat_nofollow(int dfd, const char *name, char *list, unsigned long size) {
#ifdef SYS_listxattrat
    return syscall(SYS_listxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, list, size);
#else
    errno = ENOSYS;
    return -1;
#endif
}


long cshims_getdents64(int fd, void *buffer, size_t length) { return getdents64(fd, buffer, length); }

int cshims_malloc_trim(size_t pad) { return malloc_trim(pad); }

int cshims_fallocate(int fd, int mode, long long offset, long long length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

int cshims_o_path(void) { return O_PATH; }
int cshims_o_noatime(void) { return O_NOATIME; }

long cshims_read_cached(int fd, void *buffer, unsigned long length) {
    struct iovec v = { buffer, length };
    return preadv2(fd, &v, 1, -1, RWF_NOWAIT);
}
int cshims_o_tmpfile(void) { return O_TMPFILE; }
int cshims_at_empty_path(void) { return AT_EMPTY_PATH; }
long cshims_utime_now(void) { return UTIME_NOW; }
long cshims_utime_omit(void) { return UTIME_OMIT; }
int cshims_falloc_punch_hole(void) { return FALLOC_FL_PUNCH_HOLE; }
int cshims_falloc_keep_size(void) { return FALLOC_FL_KEEP_SIZE; }
int cshims_seek_data(void) { return SEEK_DATA; }
int cshims_seek_hole(void) { return SEEK_HOLE; }

int cshims_format_fixed(char *out, int cap, double v, int decimals) { return snprintf(out, (size_t)cap, "%.*f", decimals, v); }

int cshims_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
}

/* SignalWatch (Support): a watched signal's number goes to a pipe that one thread reads. */
static int cshims_signal_pipe = -1;
static struct sigaction cshims_signal_saved[65];
static unsigned char cshims_signal_has_saved[65];

static void cshims_signal_to_pipe(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(cshims_signal_pipe, &b, 1);
    (void)r;
    errno = saved;
}

int cshims_signal_forward(int sig, int fd) {
    if (sig <= 0 || sig >= 65) { errno = EINVAL; return -1; }
    cshims_signal_pipe = fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cshims_signal_to_pipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction old;
    if (sigaction(sig, &sa, &old) != 0) return -1;
    if (!cshims_signal_has_saved[sig]) { cshims_signal_saved[sig] = old; cshims_signal_has_saved[sig] = 1; }
    return 0;
}

int cshims_signal_restore(int sig) {
    if (sig <= 0 || sig >= 65 || !cshims_signal_has_saved[sig]) { errno = EINVAL; return -1; }
    cshims_signal_has_saved[sig] = 0;
    return sigaction(sig, &cshims_signal_saved[sig], NULL);
}

int cshims_signal_is_ignored(int sig) {
    struct sigaction old;
    return sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN;
}

int cshims_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <unistd.h>
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

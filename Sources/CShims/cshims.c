#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
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

#ifndef SYS_getxattrat
#if defined(__x86_64__) || defined(__aarch64__)
#define SYS_getxattrat 464
#endif
#endif

/* struct xattr_args of linux/xattr.h (6.13+). */
struct cshims_xattr_args {
    unsigned long long value;
    unsigned int size;
    unsigned int flags;
};

long cshims_getxattrat_nofollow(int dfd, const char *name, const char *attr, void *value, unsigned long size) {
#ifdef SYS_getxattrat
    struct cshims_xattr_args args = { (unsigned long long)(unsigned long)value, (unsigned int)size, 0 };
    return syscall(SYS_getxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, attr, &args, sizeof(args));
#else
    errno = ENOSYS;
    return -1;
#endif
}

long cshims_llistxattr(const char *path, char *list, unsigned long size) { return llistxattr(path, list, size); }

long cshims_lgetxattr(const char *path, const char *attr, void *value, unsigned long size) {
    return lgetxattr(path, attr, value, size);
}

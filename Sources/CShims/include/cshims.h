// Small C helpers for glibc functions Swift cannot see without _GNU_SOURCE.
#pragma once
#include <spawn.h>

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec atomically (no leak to concurrent spawns).
int cshims_pipe_cloexec(int fds[2]);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+).
int cshims_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// listxattrat(dfd, name, AT_SYMLINK_NOFOLLOW, list, size) (Linux 6.13+): the extended
/// attribute names of `name` in directory `dfd` without walking an absolute path. -1 with
/// errno ENOSYS on older kernels (callers fall back to llistxattr).
long cshims_listxattrat_nofollow(int dfd, const char *name, char *list, unsigned long size);

/// getxattrat(dfd, name, AT_SYMLINK_NOFOLLOW, attr, {value, size}) (Linux 6.13+): one extended
/// attribute of `name` in directory `dfd`. -1 with errno ENOSYS on older kernels.
long cshims_getxattrat_nofollow(int dfd, const char *name, const char *attr, void *value, unsigned long size);

/// llistxattr / lgetxattr (sys/xattr.h is not part of Swift's Glibc module).
long cshims_llistxattr(const char *path, char *list, unsigned long size);
long cshims_lgetxattr(const char *path, const char *attr, void *value, unsigned long size);

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

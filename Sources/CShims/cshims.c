#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include "cshims.h"

int cshims_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cshims_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

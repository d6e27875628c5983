// Small C helpers for glibc functions Swift cannot see without _GNU_SOURCE, and the libc
// headers Swift's Glibc module leaves out. Swift reaches them only through Support's `Sys`.
#pragma once
#include <spawn.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/xattr.h>

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec atomically (no leak to concurrent spawns).
int cshims_pipe_cloexec(int fds[_Nonnull 2]);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+).
int cshims_spawn_addchdir(posix_spawn_file_actions_t *_Nonnull actions, const char *_Nonnull path);

/// listxattrat(dfd, name, AT_SYMLINK_NOFOLLOW, list, size) (Linux 6.13+): the extended
/// attribute names of `name` in directory `dfd` without walking an absolute path. -1 with
/// errno ENOSYS on older kernels (callers fall back to llistxattr).
long cshims_listxattrat_nofollow(int dfd, const char *_Nonnull name, char *_Nullable list, unsigned long size);

long cshims_lgetxattr(const char *_Nonnull path, const char *_Nonnull attr, void *_Nullable value, unsigned long size);

/// getdents64(fd, buffer, length) (glibc 2.30+ under _GNU_SOURCE).
long cshims_getdents64(int fd, void *_Nullable buffer, size_t length);

/// malloc_trim(pad) from <malloc.h>.
int cshims_malloc_trim(size_t pad);

/// read(fd, buffer, length) at the file's offset, from the page cache only: preadv2 with
/// RWF_NOWAIT (glibc 2.26, Linux 4.14). -1 with EAGAIN where it would wait on the disk (or
/// EOPNOTSUPP/EINVAL where the file system or kernel cannot tell).
long cshims_read_cached(int fd, void *_Nullable buffer, unsigned long length);

/// fallocate(fd, mode, offset, length) (_GNU_SOURCE).
int cshims_fallocate(int fd, int mode, long long offset, long long length);

/// The Linux flags Swift's Glibc import leaves out (_GNU_SOURCE), as the headers define them.
int cshims_o_path(void);
int cshims_o_noatime(void);
int cshims_o_tmpfile(void);
int cshims_at_empty_path(void);
long cshims_utime_now(void);
long cshims_utime_omit(void);
int cshims_falloc_punch_hole(void);
int cshims_falloc_keep_size(void);
int cshims_seek_data(void);
int cshims_seek_hole(void);

/// snprintf(out, cap, "%.*f", decimals, v): what String(format: "%.1f") etc. print, without Foundation's
/// CVarArg boxing (its first use scans the runtime's protocol conformances: ~0.3 ms per start).
int cshims_format_fixed(char *_Nonnull out, int cap, double v, int decimals);

/// The number of CPUs in this process's affinity mask (sched_getaffinity, _GNU_SOURCE), or 0
/// when it cannot be read.
int cshims_affinity_cpu_count(void);


/// SignalWatch (Support): installs a handler for `sig` that writes the signal's number (one
/// byte) to `fd`, keeping the disposition it replaces for `cshims_signal_restore`. 0 or -1.
int cshims_signal_forward(int sig, int fd);
/// Puts back the disposition `cshims_signal_forward` replaced. 0 or -1.
int cshims_signal_restore(int sig);
/// 1 when `sig` is ignored (SIG_IGN) now.
int cshims_signal_is_ignored(int sig);

/// pthread_setname_np(pthread_self(), name) (a _GNU_SOURCE call Swift does not see): the
/// calling thread's name for ps/top, at most 15 bytes. 0 or an errno.
int cshims_set_thread_name(const char *_Nonnull name);

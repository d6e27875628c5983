// libnfs loaded on first use (issue 23: every start of every tool mapped, relocated and bound
// libnfs.so.13, though only an nfs:// destination or root calls it). The first call of
// hs_libnfs() dlopen()s it and fills a table of the functions Sources/NFS uses, with the
// prototypes of nfsc/libnfs.h from libnfs-dev (a wrong prototype does not compile). The NFS
// module is the only importer; NFSClient loads the table before it creates a context, so every
// other call runs with it loaded. The .deb names libnfs13 in Depends by hand
// (scripts/package.sh), as it is no longer NEEDED.
#pragma once
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <nfsc/libnfs.h>

/// Every libnfs function the toolkit calls.
#define HS_LIBNFS_FUNCTIONS(X) \
    X(nfs_init_context) X(nfs_destroy_context) X(nfs_get_error) \
    X(nfs_parse_url_dir) X(nfs_destroy_url) X(nfs_mount) \
    X(nfs_set_timeout) X(nfs_set_autoreconnect) X(nfs_set_dircache) X(nfs_get_readmax) X(nfs_get_writemax) \
    X(nfs_get_fd) X(nfs_which_events) X(nfs_service) \
    X(nfs_stat64) X(nfs_lstat64) X(nfs_statvfs64) X(nfs_opendir) X(nfs_readdir) X(nfs_closedir) X(nfs_readlink2) \
    X(nfs_mkdir2) X(nfs_rmdir) X(nfs_unlink) X(nfs_rename) X(nfs_link) X(nfs_symlink) \
    X(nfs_chmod) X(nfs_chown) X(nfs_lchown) X(nfs_utimes) X(nfs_lutimes) \
    X(nfs_create) X(nfs_open) X(nfs_close) X(nfs_fstat64) X(nfs_fsync) X(nfs_ftruncate) \
    X(nfs_pwrite) X(nfs_pread_async) X(nfs_pwrite_async)

#define HS_LIBNFS_FIELD(name) __typeof__(name) *_Nonnull name;
/// The functions of libnfs.so.13, each under its own name.
struct hs_libnfs {
    HS_LIBNFS_FUNCTIONS(HS_LIBNFS_FIELD)
};
#undef HS_LIBNFS_FIELD

/// The Debian 12 soname of libnfs 4.0 (package libnfs13, in the .deb's Depends).
#define HS_LIBNFS_SONAME "libnfs.so.13"

/// libnfs.so.13, loaded on the first call (thread-safe, once per process); NULL when it cannot
/// be loaded or lacks a function (hs_libnfs_error() then says why).
const struct hs_libnfs *_Nullable hs_libnfs(void);

/// Why hs_libnfs() returned NULL (dlopen's or dlsym's message); "" before that.
const char *_Nonnull hs_libnfs_error(void);

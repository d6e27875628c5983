// libfuse 3 (low-level API, headers from Debian's libfuse3-dev) loaded on first use (issue 23:
// every start of every tool mapped, relocated and bound libfuse3.so.3, though only
// `hs-backup mount` calls it). The first call of hs_libfuse() dlopen()s it and fills a table of
// the functions Browse/FuseMount.swift uses, with the prototypes of fuse_lowlevel.h (a wrong
// prototype does not compile). Browse is the only importer; FuseMount loads the table before it
// creates the session, so every other call (the request handlers) runs with it loaded. The .deb
// names libfuse3-3 in Depends by hand (scripts/package.sh), as it is no longer NEEDED.
#pragma once
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

/// Every libfuse function the toolkit calls. fuse_session_loop_mt has several versions in the
/// library; hs_libfuse() takes FUSE_3.12's, the one FUSE_USE_VERSION 312 links to.
#define HS_LIBFUSE_FUNCTIONS(X) \
    X(fuse_session_new) X(fuse_session_mount) X(fuse_session_unmount) X(fuse_session_destroy) X(fuse_session_exit) \
    X(fuse_opt_free_args) X(fuse_loop_cfg_create) X(fuse_loop_cfg_destroy) \
    X(fuse_loop_cfg_set_max_threads) X(fuse_loop_cfg_set_idle_threads) \
    X(fuse_req_userdata) X(fuse_reply_err) X(fuse_reply_entry) X(fuse_reply_attr) X(fuse_reply_readlink) \
    X(fuse_reply_open) X(fuse_reply_buf) X(fuse_reply_statfs) X(fuse_reply_xattr) \
    X(fuse_add_direntry) X(fuse_add_direntry_plus)

#define HS_LIBFUSE_FIELD(name) __typeof__(name) *_Nonnull name;
/// The functions of libfuse3.so.3, each under its own name.
struct hs_libfuse {
    HS_LIBFUSE_FUNCTIONS(HS_LIBFUSE_FIELD)
    __typeof__(fuse_session_loop_mt) *_Nonnull fuse_session_loop_mt;
};
#undef HS_LIBFUSE_FIELD

/// The Debian 12 soname of libfuse 3 (package libfuse3-3, in the .deb's Depends).
#define HS_LIBFUSE_SONAME "libfuse3.so.3"

/// libfuse3.so.3, loaded on the first call (thread-safe, once per process); NULL when it cannot
/// be loaded or lacks a function (hs_libfuse_error() then says why).
const struct hs_libfuse *_Nullable hs_libfuse(void);

/// Why hs_libfuse() returned NULL (dlopen's or dlsym's message); "" before that.
const char *_Nonnull hs_libfuse_error(void);

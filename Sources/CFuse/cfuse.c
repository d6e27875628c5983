// See include/cfuse.h: libfuse3 through dlopen on first use.
#define _GNU_SOURCE // dlvsym
#include "cfuse.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct hs_libfuse libfuse_table;
static int libfuse_loaded;
static char libfuse_error[512];
static pthread_once_t libfuse_once = PTHREAD_ONCE_INIT;

static void libfuse_load(void) {
    void *handle = dlopen(HS_LIBFUSE_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(libfuse_error, sizeof libfuse_error, "%s", why ? why : "dlopen failed");
        return;
    }
    void *p;
#define HS_LIBFUSE_LOAD(name)                                                                              \
    p = dlsym(handle, #name);                                                                              \
    if (p == NULL) {                                                                                       \
        snprintf(libfuse_error, sizeof libfuse_error, "%s has no function %s", HS_LIBFUSE_SONAME, #name); \
        return;                                                                                            \
    }                                                                                                      \
    memcpy(&libfuse_table.name, &p, sizeof p);
    HS_LIBFUSE_FUNCTIONS(HS_LIBFUSE_LOAD)
#undef HS_LIBFUSE_LOAD
    // The version linking with FUSE_USE_VERSION 312 would bind (struct fuse_loop_config of 3.12),
    // not whatever a later libfuse makes the default.
    p = dlvsym(handle, "fuse_session_loop_mt", "FUSE_3.12");
    if (p == NULL) {
        snprintf(libfuse_error, sizeof libfuse_error, "%s has no function fuse_session_loop_mt@FUSE_3.12", HS_LIBFUSE_SONAME);
        return;
    }
    memcpy(&libfuse_table.fuse_session_loop_mt, &p, sizeof p);
    libfuse_loaded = 1;
}

const struct hs_libfuse *hs_libfuse(void) {
    pthread_once(&libfuse_once, libfuse_load);
    return libfuse_loaded ? &libfuse_table : NULL;
}

const char *hs_libfuse_error(void) { return libfuse_error; }

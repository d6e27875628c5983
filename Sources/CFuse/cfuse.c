// See include/cfuse.h: libfuse3 through dlopen on first use.
#define _GNU_SOURCE // dlvsym
#include "cfuse.h"
#include "hs_dlopen.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *const libfuse_names[] = {HS_LIBFUSE_FUNCTIONS(HS_DLOPEN_NAME)};
#define LIBFUSE_COUNT (sizeof libfuse_names / sizeof libfuse_names[0])
static struct hs_libfuse libfuse_table;
_Static_assert(sizeof libfuse_table == (LIBFUSE_COUNT + 1) * sizeof(void *), "one name for each function of the table but the last");
static int libfuse_loaded;
static char libfuse_error[512];
static pthread_once_t libfuse_once = PTHREAD_ONCE_INIT;

static void libfuse_load(void) {
    void *handle = hs_dlopen_table(HS_LIBFUSE_SONAME, libfuse_names, LIBFUSE_COUNT, &libfuse_table, libfuse_error, sizeof libfuse_error);
    if (handle == NULL) return;
    // The version linking with FUSE_USE_VERSION 312 would bind (struct fuse_loop_config of 3.12),
    // not whatever a later libfuse makes the default.
    void *p = dlvsym(handle, "fuse_session_loop_mt", "FUSE_3.12");
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

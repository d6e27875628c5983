// See include/cnfs.h: libnfs through dlopen on first use.
#include "cnfs.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct hs_libnfs libnfs_table;
static int libnfs_loaded;
static char libnfs_error[512];
static pthread_once_t libnfs_once = PTHREAD_ONCE_INIT;

static void libnfs_load(void) {
    void *handle = dlopen(HS_LIBNFS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(libnfs_error, sizeof libnfs_error, "%s", why ? why : "dlopen failed");
        return;
    }
    void *p;
#define HS_LIBNFS_LOAD(name)                                                                             \
    p = dlsym(handle, #name);                                                                            \
    if (p == NULL) {                                                                                     \
        snprintf(libnfs_error, sizeof libnfs_error, "%s has no function %s", HS_LIBNFS_SONAME, #name);  \
        return;                                                                                          \
    }                                                                                                    \
    memcpy(&libnfs_table.name, &p, sizeof p);
    HS_LIBNFS_FUNCTIONS(HS_LIBNFS_LOAD)
#undef HS_LIBNFS_LOAD
    libnfs_loaded = 1;
}

const struct hs_libnfs *hs_libnfs(void) {
    pthread_once(&libnfs_once, libnfs_load);
    return libnfs_loaded ? &libnfs_table : NULL;
}

const char *hs_libnfs_error(void) { return libnfs_error; }

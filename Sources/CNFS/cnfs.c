// See include/cnfs.h: libnfs through dlopen on first use.
#include "cnfs.h"
#include "hs_dlopen.h"

#include <pthread.h>

static const char *const libnfs_names[] = {HS_LIBNFS_FUNCTIONS(HS_DLOPEN_NAME)};
#define LIBNFS_COUNT (sizeof libnfs_names / sizeof libnfs_names[0])
static struct hs_libnfs libnfs_table;
_Static_assert(sizeof libnfs_table == LIBNFS_COUNT * sizeof(void *), "one name for each function of the table");
static int libnfs_loaded;
static char libnfs_error[512];
static pthread_once_t libnfs_once = PTHREAD_ONCE_INIT;

static void libnfs_load(void) {
    libnfs_loaded = hs_dlopen_table(HS_LIBNFS_SONAME, libnfs_names, LIBNFS_COUNT, &libnfs_table, libnfs_error, sizeof libnfs_error) != NULL;
}

const struct hs_libnfs *hs_libnfs(void) {
    pthread_once(&libnfs_once, libnfs_load);
    return libnfs_loaded ? &libnfs_table : NULL;
}

const char *hs_libnfs_error(void) { return libnfs_error; }

// See include/csqlite.h: libsqlite3 through dlopen on first use.
#include "csqlite.h"
#include "hs_dlopen.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/// The Debian 12 soname of SQLite 3 (package libsqlite3-0, in the .deb's Depends).
static const char sqlite_soname[] = "libsqlite3.so.0";

static const char *const sqlite_names[] = {HS_SQLITE_FUNCTIONS(HS_DLOPEN_NAME)};
#define SQLITE_COUNT (sizeof sqlite_names / sizeof sqlite_names[0])
static struct hs_sqlite sqlite_table;
_Static_assert(sizeof sqlite_table == SQLITE_COUNT * sizeof(void *), "one name for each function of the table");
static __typeof__(sqlite3_db_config) *sqlite_db_config;
static int sqlite_loaded;
static char sqlite_error[512];
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_load(void) {
    void *handle = hs_dlopen_table(sqlite_soname, sqlite_names, SQLITE_COUNT, &sqlite_table, sqlite_error, sizeof sqlite_error);
    if (handle == NULL) return;
    void *p = dlsym(handle, "sqlite3_db_config");
    if (p == NULL) {
        snprintf(sqlite_error, sizeof sqlite_error, "%s has no function sqlite3_db_config", sqlite_soname);
        return;
    }
    memcpy(&sqlite_db_config, &p, sizeof p);
    sqlite_loaded = 1;
}

const struct hs_sqlite *hs_sqlite(void) {
    pthread_once(&sqlite_once, sqlite_load);
    return sqlite_loaded ? &sqlite_table : NULL;
}

const char *hs_sqlite_error(void) { return sqlite_error; }

int csqlite_no_checkpoint_on_close(sqlite3 *db) {
    if (hs_sqlite() == NULL) return SQLITE_ERROR;
    return sqlite_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

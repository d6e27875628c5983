// libsqlite3 loaded on first use (issue 23: its load was ~0.3 ms of CPU at every start of every
// tool, though only a run that captures a database calls it). The first call of hs_sqlite()
// dlopen()s libsqlite3.so.0 and fills a table of the functions BackupOps/SQLiteSnapshot.swift
// uses, with the prototypes of sqlite3.h (a wrong prototype does not compile). The .deb names
// libsqlite3-0 in Depends by hand (scripts/package.sh), as it is no longer NEEDED.
#pragma once
#include <sqlite3.h>

/// Every SQLite function the toolkit calls from Swift (sqlite3_db_config is variadic: only
/// csqlite_no_checkpoint_on_close calls it, from C).
#define HS_SQLITE_FUNCTIONS(X) \
    X(sqlite3_open_v2) X(sqlite3_close_v2) X(sqlite3_busy_timeout) X(sqlite3_exec) X(sqlite3_free) \
    X(sqlite3_backup_init) X(sqlite3_backup_step) X(sqlite3_backup_pagecount) X(sqlite3_backup_finish) \
    X(sqlite3_errcode) X(sqlite3_errmsg) X(sqlite3_errstr)

#define HS_SQLITE_FIELD(name) __typeof__(name) *_Nonnull name;
/// The functions of libsqlite3.so.0, each under its own name.
struct hs_sqlite {
    HS_SQLITE_FUNCTIONS(HS_SQLITE_FIELD)
};
#undef HS_SQLITE_FIELD

/// libsqlite3.so.0, loaded on the first call (thread-safe, once per process); NULL when it
/// cannot be loaded or lacks a function (hs_sqlite_error() then says why).
const struct hs_sqlite *_Nullable hs_sqlite(void);

/// Why hs_sqlite() returned NULL (dlopen's or dlsym's message); "" before that.
const char *_Nonnull hs_sqlite_error(void);

/// sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, 0) (variadic; Swift cannot call
/// it): no checkpoint (and WAL removal) when this connection is the last one to close. Only
/// after hs_sqlite() returned the table.
int csqlite_no_checkpoint_on_close(sqlite3 *_Nonnull db);

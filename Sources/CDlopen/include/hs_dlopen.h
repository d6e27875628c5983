// The one loader behind the libraries the tools dlopen() on first use instead of linking them
// (CCrypto, CSQLite, CNFS, CFuse; issue 23: a linked library is mapped, relocated and bound at
// every start of every tool, whether the run calls it or not). Only those C targets include it.
#pragma once
#include <stddef.h>

/// A function's name as a string and a comma, for the name list of a table (X-macro).
#define HS_DLOPEN_NAME(name) #name,

/// dlopen()s `soname` (RTLD_NOW | RTLD_LOCAL) and stores the address of each of the `count`
/// functions named in `names` into `table`, in order: `table` starts with `count` function
/// pointers declared in the order of `names`. Returns the library's handle (for further
/// lookups), or NULL with `error` (`size` bytes) saying why: dlopen's message or the first
/// missing function.
void *_Nullable hs_dlopen_table(const char *_Nonnull soname, const char *_Nonnull const *_Nonnull names, size_t count,
                                void *_Nonnull table, char *_Nonnull error, size_t size);

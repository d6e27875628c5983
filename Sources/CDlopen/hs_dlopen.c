// See include/hs_dlopen.h.
#include "hs_dlopen.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

void *hs_dlopen_table(const char *soname, const char *const *names, size_t count, void *table, char *error, size_t size) {
    void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(error, size, "%s", why ? why : "dlopen failed");
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        void *p = dlsym(handle, names[i]);
        if (p == NULL) {
            snprintf(error, size, "%s has no function %s", soname, names[i]);
            return NULL;
        }
        // A function pointer from dlsym's void * (POSIX: same size and representation).
        memcpy((char *)table + i * sizeof p, &p, sizeof p);
    }
    return handle;
}

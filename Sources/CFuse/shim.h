// libfuse 3 (Debian's libfuse3-dev), low-level API. Only `Browse` imports this module.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

// Macros Swift cannot call, as functions.
static inline int hs_fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

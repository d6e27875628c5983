/* Entry point of the multi-call binary that scripts/package.sh links: the five tools share
 * one executable (the static Swift runtime and Foundation are ~60 MB, so five copies would
 * be ~300 MB). /usr/bin/hs-backup etc. are symlinks to it; the tool is chosen by the name it
 * was started as, or by the first argument (`home-server-tools hs-backup --help`, which
 * re-executes itself under the tool's name).
 * Each hs_*_main is the renamed `@main` of that tool's module (SwiftPM builds executable
 * modules with `-entry-point-function-name <module>_main`). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int hs_backup_main(int argc, char **argv);
int hs_restore_main(int argc, char **argv);
int hs_linkcheck_main(int argc, char **argv);
int hs_provision_main(int argc, char **argv);
int hs_deploy_main(int argc, char **argv);

static const struct { const char *name; int (*main)(int, char **); } tools[] = {
    {"hs-backup", hs_backup_main},       {"hs-restore", hs_restore_main},
    {"hs-linkcheck", hs_linkcheck_main}, {"hs-provision", hs_provision_main},
    {"hs-deploy", hs_deploy_main},
};

static int (*lookup(const char *path))(int, char **) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        if (strcmp(base, tools[i].name) == 0) return tools[i].main;
    return NULL;
}

int main(int argc, char **argv) {
    int (*tool)(int, char **) = argc > 0 ? lookup(argv[0]) : NULL;
    if (tool) return tool(argc, argv);
    if (argc > 1 && lookup(argv[1])) {
        /* Swift reads the arguments from the kernel (/proc/self/cmdline), not from argv:
         * start again with the tool's name as argv[0]. */
        execv("/proc/self/exe", argv + 1);
        perror("home-server-tools: execv /proc/self/exe");
        return 1;
    }
    fprintf(stderr, "home-server-tools: start it as one of hs-backup, hs-restore, hs-linkcheck, "
                    "hs-provision, hs-deploy (the symlinks in /usr/bin), or give the tool as the "
                    "first argument: home-server-tools hs-backup --help\n");
    return 2;
}

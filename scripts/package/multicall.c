/* Entry point of the multi-call executables that scripts/package.sh links: the static Swift
 * runtime is in every executable, so the tools share two of them instead of five copies.
 * - home-server-backup: hs-backup and hs-restore, which link FoundationEssentials only (the
 *   full Foundation's start was the largest fixed cost of a nightly run: issue 23);
 * - home-server-tools: hs-linkcheck, hs-provision and hs-deploy, which keep Foundation (Yams).
 * package.sh compiles this file once per executable with -DHS_BACKUP_TOOLS or -DHS_ADMIN_TOOLS.
 * /usr/bin/hs-backup etc. are symlinks to them; the tool is chosen by the name it was started
 * as, or by the first argument (`home-server-tools hs-deploy --help`, which re-executes itself
 * under the tool's name).
 * Each hs_*_main is the renamed `@main` of that tool's module (SwiftPM builds executable
 * modules with `-entry-point-function-name <module>_main`). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(HS_BACKUP_TOOLS)
#define EXECUTABLE "home-server-backup"
#define NAMES "hs-backup, hs-restore"
#define EXAMPLE "hs-backup"
int hs_backup_main(int argc, char **argv);
int hs_restore_main(int argc, char **argv);
static const struct { const char *name; int (*main)(int, char **); } tools[] = {
    {"hs-backup", hs_backup_main}, {"hs-restore", hs_restore_main},
};
#elif defined(HS_ADMIN_TOOLS)
#define EXECUTABLE "home-server-tools"
#define NAMES "hs-linkcheck, hs-provision, hs-deploy"
#define EXAMPLE "hs-deploy"
int hs_linkcheck_main(int argc, char **argv);
int hs_provision_main(int argc, char **argv);
int hs_deploy_main(int argc, char **argv);
static const struct { const char *name; int (*main)(int, char **); } tools[] = {
    {"hs-linkcheck", hs_linkcheck_main}, {"hs-provision", hs_provision_main}, {"hs-deploy", hs_deploy_main},
};
#else
#error "compile with -DHS_BACKUP_TOOLS or -DHS_ADMIN_TOOLS (scripts/package.sh)"
#endif

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
        perror(EXECUTABLE ": execv /proc/self/exe");
        return 1;
    }
    fprintf(stderr, EXECUTABLE ": start it as one of " NAMES " (the symlinks in /usr/bin), or give the tool "
                    "as the first argument: " EXECUTABLE " " EXAMPLE " --help\n");
    return 2;
}

#!/usr/bin/env bash
# Builds the installable package of the five tools, for hosts without a Swift toolchain:
#   dist/home-server-tools_<version>_amd64.deb     (apt-get install ./dist/...deb)
#   dist/home-server-tools_<version>_amd64.tar.gz  (tar -xzf ... -C /usr/local --strip-components=1)
# <version> is `homeServerVersion` in Sources/Support/Version.swift (what `--version` prints).
#
# Release build with the Swift standard library and Foundation linked in statically
# (--static-swift-stdlib), then TWO multi-call executables with the five tools as symlinks in
# /usr/bin: /usr/lib/home-server-tools/home-server-backup (hs-backup, hs-restore: they link
# FoundationEssentials only, no Foundation, CoreFoundation or ICU, for a faster start; checked
# here) and /usr/lib/home-server-tools/home-server-tools (hs-linkcheck, hs-provision,
# hs-deploy, with Foundation: Yams needs it). The static runtime is in each executable, five
# separate binaries would be five copies of it. The .deb's Depends are derived
# from the executables' NEEDED libraries and the Debian packages that own them (dpkg -S),
# libc6 with the newest glibc version it needs (symbol versions; it must stay <= 2.35 so that
# the old server of the runbook's migration, e.g. Ubuntu 22.04, runs it), plus curl (the notifications run it) and the
# owners of libcrypto.so.3, libsqlite3.so.0, libnfs.so.13 and libfuse3.so.3 (libssl3,
# libsqlite3-0, libnfs13, libfuse3-3: loaded with dlopen on first use, so not NEEDED).
# It fails if an executable still needs a library of the Swift toolchain.
#
# Debian-native: systemd units and timers (installed disabled), the conffile
# /etc/default/home-server-tools (0600), man pages (one per tool from swift-argument-parser's
# generate-manual, plus home-server-tools(7) from docs/ through go-md2man), bash/zsh/fish
# completions (--generate-completion-script), copyright, changelog.gz (a native package: no
# Debian revision in 0.x; scripts/package/changelog's top entry must be this version), the
# Maintainer from scripts/package/maintainer, /var/lib/home-server-tools (0700).
#
# Needs the build dependencies only (scripts/bootstrap.sh --build-only) and a Swift toolchain.
# Environment: HS_DIST (output directory, default ./dist), HS_RELEASE_SCRATCH (SwiftPM
# scratch path of the release build, default ./.build-release).
# Output: the paths of the .deb and the tarball on stdout (one a line); the log on stderr.
# Exit codes: 0 package written, 1 build or check failed, 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

log() { printf '[package] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ $# -gt 0 ]; then
  echo "usage: scripts/package.sh   (no arguments; HS_DIST=dir to write elsewhere than ./dist)" >&2
  exit 2
fi
command -v swift >/dev/null || die "no swift on PATH: install a Swift 6.1+ toolchain (swift.org or swiftly)"
for t in dpkg-deb dpkg-query readelf objdump ldd ld objcopy strip clang go-md2man gzip; do
  command -v "$t" >/dev/null || die "$t is missing: run scripts/bootstrap.sh --build-only (as root)"
done

VERSION=$(sed -n 's/^package let homeServerVersion = "\([0-9][0-9A-Za-z.+~-]*\)"$/\1/p' Sources/Support/Version.swift)
[ -n "$VERSION" ] || die "no 'package let homeServerVersion = \"X.Y.Z\"' line in Sources/Support/Version.swift"
ARCH=$(dpkg --print-architecture)
[ "$ARCH" = amd64 ] || die "only amd64 is packaged (this machine is $ARCH)"
NAME=home-server-tools
BASE="${NAME}_${VERSION}_${ARCH}"
MAINTAINER=$(sed -n '1p' scripts/package/maintainer)
[[ "$MAINTAINER" =~ ^[^\<]+\ \<[^@\ ]+@[^@\ ]+\.[^@\ ]+\>$ ]] || die "scripts/package/maintainer: expected one line 'Name <address>', found '$MAINTAINER'"
[[ "$MAINTAINER" != *@localhost* ]] || die "scripts/package/maintainer: $MAINTAINER is on localhost; give a real address"
CHANGELOG_VERSION=$(sed -n '1s/^home-server-tools (\([^)]*\)).*/\1/p' scripts/package/changelog)
[ "$CHANGELOG_VERSION" = "$VERSION" ] || die "scripts/package/changelog: the top entry is '$CHANGELOG_VERSION', the version is $VERSION: add an entry for $VERSION"
# Dates in the package (man pages, gzip) come from the changelog entry, so a rebuild is the same.
CHANGELOG_DATE=$(sed -n 's/^ -- .*>  \(.*\)$/\1/p' scripts/package/changelog | head -1)
SOURCE_DATE_EPOCH=$(date -d "$CHANGELOG_DATE" +%s) || die "scripts/package/changelog: cannot read the date '$CHANGELOG_DATE' of the top entry"
export SOURCE_DATE_EPOCH
MAN_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
TOOLS=(hs-backup hs-restore hs-linkcheck hs-provision hs-deploy)
BACKUP_TOOLS=(hs-backup hs-restore)
ADMIN_TOOLS=(hs-linkcheck hs-provision hs-deploy)
EXECUTABLES=(home-server-backup "$NAME")
# The multi-call executable a tool is a symlink to.
exe_of() { case $1 in hs-backup|hs-restore) echo home-server-backup ;; *) echo "$NAME" ;; esac; }
DIST=${HS_DIST:-$PWD/dist}
SCRATCH=${HS_RELEASE_SCRATCH:-$PWD/.build-release}
SWIFT_ROOT=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")

# 1. Release build of each tool, static Swift stdlib. Progress lines ("[12/80] Compiling")
#    are dropped; pipefail keeps swift build's exit status.
for t in "${TOOLS[@]}"; do
  log "swift build -c release --static-swift-stdlib --product $t"
  swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product "$t" 2>&1 \
    | sed -E -e '/^\[[0-9]+\/[0-9]+\] /d' -e "/warning: the use of \`mktemp' is dangerous/d" >&2
done
BIN=$(swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --show-bin-path)

WORK="$DIST/.work-$$"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$WORK"; mkdir -p "$WORK/objects"

# 2. The multi-call executables: every object of their products once; each tool module's
#    objects merged (ld -r) with only its entry point left global, because every `@main`
#    module also defines the same weak `async_Main` thunk and the linker would keep one.
# The C libraries behind the system-library targets (see Package.swift).
libs=()
# Not libcrypto, sqlite3, libnfs or fuse3: CCrypto, CSQLite, CNFS and CFuse dlopen() them on
# first use (their include/*.h).
for pc in zlib libdeflate libisal; do
  f=$(pkg-config --libs "$pc") || die "pkg-config does not know $pc: run scripts/bootstrap.sh --build-only (as root)"
  read -r -a flags <<< "$f"
  libs+=("${flags[@]}")
done
# link_multicall EXECUTABLE -DGROUP TOOL...: $WORK/EXECUTABLE, not yet stripped.
link_multicall() {
  local exe=$1 group=$2; shift 2
  local objlist="$WORK/$exe.objects.list" t list module objs
  : > "$objlist"
  for t in "$@"; do
    list="$BIN/$t.product/Objects.LinkFileList"
    [ -s "$list" ] || die "$list is missing: SwiftPM's build layout changed; the multi-call link needs the object list of $t"
    module=${t//-/_}
    objs=("$BIN/$module.build/"*.o)
    [ -e "${objs[0]}" ] || die "no object files in $BIN/$module.build"
    ld -r -o "$WORK/objects/$module.o" "${objs[@]}"
    objcopy --keep-global-symbol="${module}_main" "$WORK/objects/$module.o"
    grep -v "/$module\.build/" "$list" >> "$objlist"
    echo "$WORK/objects/$module.o" >> "$objlist"
  done
  sort -u -o "$objlist" "$objlist"
  clang -c -O2 -Wall -Werror "$group" -o "$WORK/objects/multicall-$exe.o" scripts/package/multicall.c
  echo "$WORK/objects/multicall-$exe.o" >> "$objlist"
  log "linking the multi-call executable $exe ($(wc -l < "$objlist") objects: $*)"
  # As Package.swift links the tools (see toolLinkerSettings there), for a faster start:
  # --no-export-dynamic undoes the toolchain's -export-dynamic (static-stdlib-args.lnk), so no
  # symbol of ours is in .dynsym. No -z pack-relative-relocs: DT_RELR needs glibc >= 2.36.
  # -L link/static-libstdc++: the toolchain's -lstdc++ finds a linker script that names GCC's
  # libstdc++.a (loading the shared one cost ~0.4 ms of every start).
  swiftc -static-stdlib -emit-executable -use-ld=lld -Xlinker --gc-sections -Xlinker --no-export-dynamic \
    -L "$PWD/link/static-libstdc++" \
    -target x86_64-unknown-linux-gnu \
    -o "$WORK/$exe" "@$objlist" "${libs[@]}" 2>&1 \
    | sed -e "/warning: the use of \`mktemp' is dangerous/d" >&2
}
link_multicall home-server-backup -DHS_BACKUP_TOOLS "${BACKUP_TOOLS[@]}"
link_multicall "$NAME" -DHS_ADMIN_TOOLS "${ADMIN_TOOLS[@]}"

# 3. Checks: hs-backup and hs-restore without the full Foundation (before stripping: by
#    symbol, as StartupTests.essentialsOnly checks the SwiftPM builds), no library of the Swift
#    toolchain, nothing unresolved, every tool answers.
# (`__CFUniChar...` are FoundationEssentials' own Unicode tables, not CoreFoundation.)
foundation=$(nm --no-demangle "$WORK/home-server-backup" \
  | awk '$NF ~ /^(\$s10Foundation|\$s31FoundationInternationalization|_FoundationICU|CF|__CF|_CF|ucal_|udat_|ures_|u_)/ && $NF !~ /^__CFUniChar/ { print $NF }')
[ -z "$foundation" ] || die "home-server-backup (hs-backup, hs-restore) links the full Foundation, CoreFoundation or ICU: $(head -5 <<< "$foundation" | paste -sd' ')"
for exe in "${EXECUTABLES[@]}"; do
  strip --strip-all "$WORK/$exe"
  lddout=$(ldd "$WORK/$exe")
  if grep -q "not found" <<< "$lddout"; then die "$exe: unresolved libraries: $(grep 'not found' <<< "$lddout")"; fi
  if grep -qF "$SWIFT_ROOT" <<< "$lddout"; then die "$exe: still linked to the toolchain ($SWIFT_ROOT): $(grep -F "$SWIFT_ROOT" <<< "$lddout")"; fi
  if grep -qE 'libswift|libFoundation|libdispatch|libBlocksRuntime' <<< "$lddout"; then die "$exe: a Swift runtime library is linked dynamically: $lddout"; fi
  if grep -qE 'libcrypto|libsqlite3|libnfs|libfuse3' <<< "$lddout"; then die "$exe: libcrypto, libsqlite3, libnfs or libfuse3 is linked (CCrypto/CSQLite/CNFS/CFuse load them on first use): $lddout"; fi
  elfdyn=$(readelf -d "$WORK/$exe")
  if grep -E '\(NEEDED\)' <<< "$elfdyn" | grep -qE '\[(libcrypto|libsqlite3|libnfs|libfuse3)\.'; then
    die "$exe NEEDs a library loaded with dlopen on first use (CCrypto/CSQLite/CNFS/CFuse): $(grep -E '\(NEEDED\)' <<< "$elfdyn")"
  fi
  if grep -q '(RELR)' <<< "$elfdyn" || readelf -V "$WORK/$exe" | grep -q 'GLIBC_ABI_DT_RELR'; then
    die "$exe has packed relative relocations (DT_RELR, glibc >= 2.36): the old server of the runbook's migration (glibc 2.35, Ubuntu 22.04) could not run it"
  fi
  grep -q 'Flags: PIE' <<< "$elfdyn" || die "$exe is not a PIE (ASLR)"
  if grep -E '\(NEEDED\)' <<< "$elfdyn" | grep -qF '[libstdc++.so'; then
    die "$exe NEEDs the shared libstdc++: link/static-libstdc++ was not found first (see toolLinkerSettings in Package.swift)"
  fi
done
for t in "${TOOLS[@]}"; do
  ln -sf "$(exe_of "$t")" "$WORK/$t"
  "$WORK/$t" --help > "$WORK/help.txt" 2>&1 || die "$t --help failed: $(cat "$WORK/help.txt")"
  grep -q "USAGE: $t" "$WORK/help.txt" || die "$t --help did not print its own usage: $(head -3 "$WORK/help.txt")"
done

# 3b. Man pages (generate-manual: the tool of swift-argument-parser's GenerateManual plugin,
#     built from the same checkout, reading each tool's --experimental-dump-help) and shell
#     completions (each tool's --generate-completion-script).
log "building generate-manual (swift-argument-parser's man page generator)"
AP_CHECKOUT="$SCRATCH/checkouts/swift-argument-parser"
[ -f "$AP_CHECKOUT/Tools/generate-manual/GenerateManual.swift" ] || die "$AP_CHECKOUT has no Tools/generate-manual: swift-argument-parser's layout changed"
swift build --package-path "$AP_CHECKOUT" --scratch-path "$SCRATCH/generate-manual" --product generate-manual 2>&1 \
  | sed -E -e '/^\[[0-9]+\/[0-9]+\] /d' >&2
GENERATE_MANUAL=$(swift build --package-path "$AP_CHECKOUT" --scratch-path "$SCRATCH/generate-manual" --show-bin-path)/generate-manual
mkdir -p "$WORK/man" "$WORK/completions/bash" "$WORK/completions/zsh" "$WORK/completions/fish"
for t in "${TOOLS[@]}"; do
  "$GENERATE_MANUAL" "$WORK/$t" --date "$MAN_DATE" --section 1 --authors "$MAINTAINER" --output-directory "$WORK/man" >&2 \
    || die "generate-manual failed for $t"
  [ -s "$WORK/man/$t.1" ] || die "generate-manual wrote no $t.1 (found: $(ls "$WORK/man"))"
  # Blank lines are not roff (groff warns "empty input line").
  sed -i '/^[[:space:]]*$/d' "$WORK/man/$t.1"
  # A completion file is sourced, not run: no #! line (lintian: bash-completion-with-hashbang).
  "$WORK/$t" --generate-completion-script bash | sed '1{/^#!/d}' > "$WORK/completions/bash/$t"
  "$WORK/$t" --generate-completion-script zsh > "$WORK/completions/zsh/_$t"
  "$WORK/$t" --generate-completion-script fish > "$WORK/completions/fish/$t.fish"
  for f in "$WORK/completions/bash/$t" "$WORK/completions/zsh/_$t" "$WORK/completions/fish/$t.fish"; do
    grep -q "$t" "$f" || die "the completion script $f does not name $t"
  done
done
# home-server-tools(7): the reference documents of docs/ as one page.
{
  printf '%% HOME-SERVER-TOOLS 7 "%s" "home-server-tools %s" "home-server-tools"\n\n' "$MAN_DATE" "$VERSION"
  printf '# NAME\nhome-server-tools - backups, restores, hardlink checks, provisioning and deploys for a Proxmox/TrueNAS home server\n\n'
  printf '# SEE ALSO\nhs-backup(1), hs-restore(1), hs-linkcheck(1), hs-provision(1), hs-deploy(1), systemd.timer(5)\n\n'
  for d in configuration scheduling backups restore linkcheck provisioning package; do
    [ -f "docs/$d.md" ] || die "docs/$d.md is missing (home-server-tools(7) is made from it)"
    sed -e '/^<!-- .* -->$/d' -e 's/\[\([^]]*\)\]([a-z-]*\.md)/\1/g' "docs/$d.md"
    printf '\n'
  done
} > "$WORK/home-server-tools.7.md"
go-md2man -in "$WORK/home-server-tools.7.md" -out "$WORK/man/home-server-tools.7"

# 4. Depends: the Debian package owning each NEEDED library (ldd gives the path).
owner() {
  local p=$1 real pkg
  real=$(readlink -f "$p")
  for cand in "$p" "$real" "/usr$p" "/usr$real" "${p#/usr}" "${real#/usr}"; do
    if pkg=$(dpkg-query -S "$cand" 2>/dev/null); then
      echo "${pkg%%:*}"
      return 0
    fi
  done
  die "no Debian package owns $p (needed by the tools): install it from Debian or drop the dependency"
}
deps=()
for exe in "${EXECUTABLES[@]}"; do
  lddout=$(ldd "$WORK/$exe")
  for so in $(readelf -d "$WORK/$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    # "libz.so.1 => /lib/.../libz.so.1 (0x...)", or "/lib64/ld-linux-x86-64.so.2 (0x...)".
    path=$(awk -v so="$so" '($1 == so && $2 == "=>") { print $3 } (substr($1, 1, 1) == "/" && $1 ~ ("/" so "$")) { print $1 }' <<< "$lddout")
    [ -n "$path" ] || die "ldd does not resolve $so (needed by $exe)"
    pkg=$(owner "$path")
    deps+=("$pkg")
  done
done
# libc6 with the newest glibc symbol version the executables use (an older glibc cannot run
# them); above 2.35 the runbook's old server (Ubuntu 22.04) could not run the tools.
glibc=$(for exe in "${EXECUTABLES[@]}"; do objdump -T "$WORK/$exe"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -1)
[ -n "$glibc" ] || die "no GLIBC_ symbol versions in the executables"
[ "$(printf '%s\n2.35\n' "$glibc" | sort -V | tail -1)" = 2.35 ] || die "the executables need glibc $glibc (> 2.35): Ubuntu 22.04, the runbook's old server, could not run them"
# libcrypto.so.3 is dlopen()ed by CCrypto (SHA-256 without SHA-NI, age, remote hashes),
# libsqlite3.so.0 by CSQLite (database capture), libnfs.so.13 by CNFS (nfs:// destinations and
# roots) and libfuse3.so.3 by CFuse (hs-backup mount): their packages.
for so in libcrypto.so.3 libsqlite3.so.0 libnfs.so.13 libfuse3.so.3; do
  path=$(ldconfig -p | awk -v so="$so" '!found && $1 == so && /x86-64/ { path = $NF; found = 1 } END { print path }')
  [ -n "$path" ] || die "ldconfig does not know $so: run scripts/bootstrap.sh --build-only (as root)"
  deps+=("$(owner "$path")")
done
# curl: the notifications (ntfy, Uptime Kuma, Healthchecks) run curl(1) as a child process
# (Sources/BackupOps/CurlRequest.swift), so no networking library is linked into the tools.
deps+=(curl)
DEPENDS=$(printf '%s\n' "${deps[@]}" | sort -u | sed "s/^libc6\$/libc6 (>= $glibc)/" | paste -sd, | sed 's/,/, /g')
log "Depends: $DEPENDS"

# 5. The .deb: /usr/lib/home-server-tools/{home-server-backup,home-server-tools} + /usr/bin symlinks, units,
#    conffile, man pages, completions, docs.
ROOT="$WORK/deb"
install -d "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/usr/lib/$NAME" "$ROOT/usr/share/doc/$NAME/examples" \
  "$ROOT/lib/systemd/system" "$ROOT/etc/default" "$ROOT/usr/share/man/man1" "$ROOT/usr/share/man/man7" \
  "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
  "$ROOT/usr/share/fish/vendor_completions.d" "$ROOT/usr/share/lintian/overrides"
install -d -m 0700 "$ROOT/var/lib/$NAME"
for exe in "${EXECUTABLES[@]}"; do install -m 0755 "$WORK/$exe" "$ROOT/usr/lib/$NAME/$exe"; done
for t in "${TOOLS[@]}"; do ln -s "../lib/$NAME/$(exe_of "$t")" "$ROOT/usr/bin/$t"; done
install -m 0644 crontab.example "$ROOT/usr/share/doc/$NAME/examples/crontab.example"
install -m 0644 scripts/package/systemd/*.service scripts/package/systemd/*.timer "$ROOT/lib/systemd/system/"
install -m 0600 scripts/package/default/home-server-tools "$ROOT/etc/default/$NAME"
echo "/etc/default/$NAME" > "$ROOT/DEBIAN/conffiles"
for t in "${TOOLS[@]}"; do
  gzip -9n < "$WORK/man/$t.1" > "$ROOT/usr/share/man/man1/$t.1.gz"
  install -m 0644 "$WORK/completions/bash/$t" "$ROOT/usr/share/bash-completion/completions/$t"
  install -m 0644 "$WORK/completions/zsh/_$t" "$ROOT/usr/share/zsh/vendor-completions/_$t"
  install -m 0644 "$WORK/completions/fish/$t.fish" "$ROOT/usr/share/fish/vendor_completions.d/$t.fish"
done
gzip -9n < "$WORK/man/home-server-tools.7" > "$ROOT/usr/share/man/man7/home-server-tools.7.gz"
gzip -9n < scripts/package/changelog > "$ROOT/usr/share/doc/$NAME/changelog.gz"
sed "s|@MAINTAINER@|$MAINTAINER|" scripts/package/copyright > "$ROOT/usr/share/doc/$NAME/copyright"
install -m 0644 scripts/package/lintian-overrides "$ROOT/usr/share/lintian/overrides/$NAME"
install -m 0755 scripts/package/postinst scripts/package/prerm scripts/package/postrm "$ROOT/DEBIAN/"
cat > "$ROOT/usr/share/doc/$NAME/README" <<EOF
home-server-tools $VERSION: hs-backup, hs-restore, hs-linkcheck, hs-provision, hs-deploy.
Two multi-call executables (Swift runtime linked in statically): /usr/lib/$NAME/home-server-backup
(hs-backup, hs-restore) and /usr/lib/$NAME/$NAME (hs-linkcheck, hs-provision, hs-deploy);
the tools are symlinks to them in /usr/bin. Documentation: README.md and docs/ of the home-server repository.
EOF
SIZE_KB=$(du -sk --apparent-size "$ROOT/usr" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $SIZE_KB
Depends: $DEPENDS
Recommends: fuse3
Section: admin
Priority: optional
Description: home-server toolkit: backup, restore, hardlink checks, provisioning, deploy
 hs-backup and hs-restore (tar+gzip backups of /opt/appdata to a directory or an
 NFS export through libnfs; hs-backup mount needs fuse3), hs-linkcheck, hs-provision
 and hs-deploy, as two multi-call executables with the Swift runtime linked in
 statically: no Swift toolchain is needed on the host.
EOF
mkdir -p "$DIST"
find "$ROOT" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DIST/$BASE.deb.partial" >/dev/null
mv -f "$DIST/$BASE.deb.partial" "$DIST/$BASE.deb"

# 6. The tarball: home-server-tools-<version>/{bin,lib,share} for /usr/local, with the .deb's
#    man pages and completions where /usr/local's searches find them (man-db's MANPATH
#    /usr/local/share/man; bash-completion and fish through XDG_DATA_DIRS, /usr/local/share
#    first; zsh's fpath on Debian has /usr/local/share/zsh/site-functions). No units or
#    conffile: those need the package.
TOP="$NAME-$VERSION"
T="$WORK/tar/$TOP"
install -d "$T/bin" "$T/lib/$NAME" "$T/share/doc/$NAME" "$T/share/man/man1" "$T/share/man/man7" \
  "$T/share/bash-completion/completions" "$T/share/zsh/site-functions" "$T/share/fish/vendor_completions.d"
for exe in "${EXECUTABLES[@]}"; do install -m 0755 "$WORK/$exe" "$T/lib/$NAME/$exe"; done
for t in "${TOOLS[@]}"; do
  ln -s "../lib/$NAME/$(exe_of "$t")" "$T/bin/$t"
  install -m 0644 "$ROOT/usr/share/man/man1/$t.1.gz" "$T/share/man/man1/"
  install -m 0644 "$ROOT/usr/share/bash-completion/completions/$t" "$T/share/bash-completion/completions/"
  install -m 0644 "$ROOT/usr/share/zsh/vendor-completions/_$t" "$T/share/zsh/site-functions/"
  install -m 0644 "$ROOT/usr/share/fish/vendor_completions.d/$t.fish" "$T/share/fish/vendor_completions.d/"
done
install -m 0644 "$ROOT/usr/share/man/man7/$NAME.7.gz" "$T/share/man/man7/"
install -m 0644 crontab.example "$ROOT/usr/share/doc/$NAME/README" "$T/share/doc/$NAME/"
echo "apt-get install $(sed 's/,//g' <<< "$DEPENDS")" > "$T/share/doc/$NAME/DEPENDS"
tar --owner=0 --group=0 --numeric-owner -C "$WORK/tar" -czf "$DIST/$BASE.tar.gz.partial" "$TOP"
mv -f "$DIST/$BASE.tar.gz.partial" "$DIST/$BASE.tar.gz"

# 7. Sizes (docs/package.md "Package and binary sizes" is written from these lines).
size() { stat -c %s "$1"; }
log "sizes in bytes:"
printf '  %-44s %10s\n' "$BASE.deb" "$(size "$DIST/$BASE.deb")" "$BASE.tar.gz" "$(size "$DIST/$BASE.tar.gz")" \
  "home-server-backup (stripped)" "$(size "$WORK/home-server-backup")" "$NAME (stripped)" "$(size "$WORK/$NAME")" >&2
for t in "${TOOLS[@]}"; do
  strip --strip-all -o "$WORK/single" "$BIN/$t"
  printf '  %-44s %10s\n' "separate $t (stripped, for comparison)" "$(size "$WORK/single")" >&2
done
echo "$DIST/$BASE.deb"
echo "$DIST/$BASE.tar.gz"

// The read-only FUSE file system of `hs-backup mount`: libfuse 3's low-level API (the only
// importer of CFuse) over `MountTree`. Node ids are the tree's inode numbers, so a hardlink is
// one inode under several names. Every request is answered on libfuse's worker threads.
//
// Mounted with `ro` (the kernel refuses every write with EROFS before it reaches us; the write
// operations answer EROFS too), private to the mounting user unless `--allow-other`, which also
// turns on `default_permissions` so the kernel checks each entry's mode and owner (without it
// any local user could read the 0600 files inside every backup).
internal import CFuse
import Archive
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

package final class FuseMount: Sendable {
    package struct Options: Sendable {
        package var mountpoint: String
        package var allowOther = false
        /// libfuse's debug output on stderr (`-d`).
        package var debug = false
        package init(mountpoint: String) { self.mountpoint = mountpoint }
    }

    package let tree: MountTree
    package let options: Options
    private let files = Mutex<(next: UInt64, open: [UInt64: OpenFile])>((1, [:]))
    private let directories = Mutex<(next: UInt64, open: [UInt64: [(name: [UInt8], attributes: NodeAttributes)]])>((1, [:]))
    private let logged = Mutex<Set<String>>([])
    /// How long the kernel may keep what it learnt of a backup's entries (they never change),
    /// and of the sets and `latest` (which change when a backup is taken or pruned).
    static let immutableTimeout = 3600.0
    static let changingTimeout = 1.0

    package init(tree: MountTree, options: Options) {
        self.tree = tree
        self.options = options
    }

    // MARK: mounting

    /// Checks the mount point: an existing, empty directory that is not a mount point already.
    /// - Throws: `ToolError.usage` naming what is wrong and what to do.
    package static func checkMountpoint(_ path: String) throws {
        let shown = NameEscape.escape(path)   // a path a person gave, in messages
        var st = Glibc.stat()
        if fstatat(AT_FDCWD, path, &st, 0) != 0 {
            let e = Glibc.errno
            if e == ENOTCONN {
                throw ToolError.usage("\(shown) is a FUSE mount whose process is gone; unmount it first: fusermount3 -u \(shown)")
            }
            throw ToolError.usage("mount point \(shown): \(String(cString: strerror(e))). Create an empty directory for it first (mkdir \(shown)).")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw ToolError.usage("mount point \(shown) is not a directory; give an empty directory.") }
        var parent = Glibc.stat()
        if fstatat(AT_FDCWD, path + "/..", &parent, 0) == 0, parent.st_dev != st.st_dev || (parent.st_ino == st.st_ino && path != "/") {
            throw ToolError.usage("\(shown) is already a mount point (busy); unmount what is there (fusermount3 -u \(shown) or umount \(shown)) or choose another directory.")
        }
        guard let d = opendir(path) else { throw ToolError.usage("cannot read mount point \(shown): \(String(cString: strerror(Glibc.errno))).") }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [0x2E] && name != [0x2E, 0x2E] {
                throw ToolError.usage("mount point \(shown) is not empty; mounting over it would hide what is there. Give an empty directory.")
            }
        }
    }

    /// Mounts and serves until unmounted (`fusermount3 -u`) or until SIGINT, SIGTERM or SIGHUP.
    /// - Parameter mounted: called once the file system is mounted.
    /// - Returns: the signal that ended it, or 0.
    /// - Throws: `ToolError` when libfuse3 cannot be loaded or the mount fails (no /dev/fuse, no
    ///   permission).
    package func run(mounted: () -> Void) throws -> Int32 {
        try LibFuse.load()
        try Self.checkMountpoint(options.mountpoint)
        var opts = ["ro", "fsname=hs-backup", "subtype=hs-backup"]
        if options.allowOther { opts += ["allow_other", "default_permissions"] }
        var argv = ["hs-backup", "-o", opts.joined(separator: ",")]
        if options.debug { argv.append("-d") }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        defer { for p in cargs { free(p) } }
        var ops = fuse_lowlevel_ops()
        Self.install(&ops)
        let me = Unmanaged.passRetained(self)
        defer { me.release() }
        let session: OpaquePointer? = cargs.withUnsafeMutableBufferPointer { buf in
            var args = fuse_args(argc: Int32(argv.count), argv: buf.baseAddress, allocated: 0)
            defer { libfuse.fuse_opt_free_args(&args) }
            return libfuse.fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, me.toOpaque())
        }
        guard let se = session else { throw ToolError("could not start the FUSE session (libfuse refused the options; see above).") }
        defer { libfuse.fuse_session_destroy(se) }
        guard libfuse.fuse_session_mount(se, options.mountpoint) == 0 else {
            throw ToolError("could not mount at \(NameEscape.escape(options.mountpoint)) (see libfuse's message above). Check that /dev/fuse exists and fuse3 is installed "
                            + "(apt-get install fuse3); as a user other than root, --allow-other needs user_allow_other in /etc/fuse.conf.")
        }
        let stop = StopSignals(session: se, mountpoint: options.mountpoint)
        defer { stop.cancel() }
        mounted()
        guard let cfg = libfuse.fuse_loop_cfg_create() else { libfuse.fuse_session_unmount(se); throw ToolError("out of memory") }
        defer { libfuse.fuse_loop_cfg_destroy(cfg) }
        libfuse.fuse_loop_cfg_set_max_threads(cfg, 16)
        libfuse.fuse_loop_cfg_set_idle_threads(cfg, 4)
        _ = libfuse.fuse_session_loop_mt(se, cfg)
        libfuse.fuse_session_unmount(se)
        return stop.received
    }

    /// SIGINT, SIGTERM and SIGHUP end the loop, whichever thread they are delivered to: the
    /// session is marked to exit and a lookup of a name that does not exist is sent through the
    /// mount, so a worker wakes up, answers it and sees the mark. (libfuse's own handlers only
    /// set the mark, which a worker notices at its next request, and skip a signal a shell
    /// ignores for its background jobs.) SIGHUP ignored when the mount started (nohup) stays
    /// ignored.
    private final class StopSignals {
        private final class Mark: Sendable { let signal = Mutex<Int32>(0) }
        private let mark: Mark
        private let token: SignalWatch.Token
        /// The signal that ended the mount (0: none).
        var received: Int32 { mark.signal.withLock { $0 } }

        init(session: OpaquePointer, mountpoint: String) {
            let se = UnsafeSendable(session)
            let mark = Mark()
            self.mark = mark
            token = SignalWatch.shared.watch([SIGINT, SIGTERM, SIGHUP], keepIgnored: [SIGHUP]) { [mark] sig in
                mark.signal.withLock { $0 = sig }
                libfuse.fuse_session_exit(se.value)
                startThread { _ = access(mountpoint + "/.hs-backup-stop-\(getpid())", F_OK) }
            }
            // The signals unmount from here on: the tools' guard (`SignalGuard`, armed by
            // `ToolCommand.main` for the mount's start) would exit and leave the mount behind.
            SignalGuard.shared.disarm()
        }

        func cancel() { SignalWatch.shared.cancel(token) }
    }

    // MARK: replies

    private static func fs(_ req: fuse_req_t?) -> FuseMount {
        Unmanaged<FuseMount>.fromOpaque(libfuse.fuse_req_userdata(req)!).takeUnretainedValue()
    }

    private static func bytes(_ name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let name else { return [] }
        return Array(UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self), count: strlen(name)))
    }

    private static func statOf(_ a: NodeAttributes) -> stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.ino)
        switch a.kind {
        case .directory: st.st_mode = S_IFDIR | a.mode
        case .file: st.st_mode = S_IFREG | a.mode
        case .symlink: st.st_mode = S_IFLNK | a.mode
        }
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(clamping: a.size)
        st.st_blksize = 65536
        st.st_blocks = Int((a.size + 511) / 512)
        st.st_mtim = timespec(tv_sec: Int(a.mtime.seconds), tv_nsec: Int(a.mtime.nanoseconds))
        st.st_atim = st.st_mtim
        st.st_ctim = timespec(tv_sec: Int(a.ctime.seconds), tv_nsec: Int(a.ctime.nanoseconds))
        return st
    }

    private static func timeout(_ ino: UInt64) -> Double {
        MountTree.split(ino) != nil ? immutableTimeout : changingTimeout
    }

    private static func entry(_ a: NodeAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino
        e.attr = statOf(a)
        e.attr_timeout = a.kind == .symlink && MountTree.split(a.ino) == nil ? changingTimeout : timeout(a.ino)
        e.entry_timeout = e.attr_timeout
        return e
    }

    /// The errno for a failure (an I/O failure is logged once per message).
    private func errnoOf(_ f: MountFailure) -> Int32 {
        switch f {
        case .notFound: return ENOENT
        case .notDirectory: return ENOTDIR
        case .notSymlink: return EINVAL
        case .isDirectory: return EISDIR
        case .noAttribute: return ENODATA
        case .stale: return ESTALE
        case .io(let message):
            if logged.withLock({ $0.insert(message).inserted }) { Reporter.writeStderr("error: \(message)\n") }
            return EIO
        }
    }

    private static func fail(_ req: fuse_req_t?, _ f: MountFailure) {
        _ = libfuse.fuse_reply_err(req, fs(req).errnoOf(f))
    }

    // MARK: operations

    private static func install(_ ops: inout fuse_lowlevel_ops) {
        ops.`init` = { _, conn in
            guard let conn else { return }
            conn.pointee.want |= UInt32(FUSE_CAP_ASYNC_READ)
            if conn.pointee.capable & UInt32(FUSE_CAP_READDIRPLUS) != 0 { conn.pointee.want |= UInt32(FUSE_CAP_READDIRPLUS) }
            conn.pointee.max_readahead = max(conn.pointee.max_readahead, 1 << 20)
        }
        ops.lookup = { req, parent, name in
            let me = FuseMount.fs(req)
            do throws(MountFailure) {
                var e = FuseMount.entry(try me.tree.lookup(parent, FuseMount.bytes(name)))
                _ = libfuse.fuse_reply_entry(req, &e)
            } catch .notFound where MountTree.split(parent) != nil {
                // Inside a backup nothing appears later: the kernel may remember the absence.
                var e = fuse_entry_param()
                e.entry_timeout = FuseMount.immutableTimeout
                _ = libfuse.fuse_reply_entry(req, &e)
            } catch { FuseMount.fail(req, error) }
        }
        ops.getattr = { req, ino, _ in
            do throws(MountFailure) {
                var st = FuseMount.statOf(try FuseMount.fs(req).tree.attributes(ino))
                _ = libfuse.fuse_reply_attr(req, &st, FuseMount.timeout(ino))
            } catch { FuseMount.fail(req, error) }
        }
        ops.readlink = { req, ino in
            do throws(MountFailure) {
                let target = try FuseMount.fs(req).tree.readlink(ino)
                let c = target.map { CChar(bitPattern: $0) } + [0]
                _ = libfuse.fuse_reply_readlink(req, c)
            } catch { FuseMount.fail(req, error) }
        }
        ops.opendir = { req, ino, fi in
            let me = FuseMount.fs(req)
            do throws(MountFailure) {
                let list = try me.tree.children(ino)
                let h = me.directories.withLock { d in
                    let h = d.next
                    d.next += 1
                    d.open[h] = list
                    return h
                }
                fi!.pointee.fh = h
                if MountTree.split(ino) != nil { fi!.pointee.cache_readdir = 1; fi!.pointee.keep_cache = 1 }
                _ = libfuse.fuse_reply_open(req, fi)
            } catch { FuseMount.fail(req, error) }
        }
        ops.releasedir = { req, _, fi in
            _ = FuseMount.fs(req).directories.withLock { $0.open.removeValue(forKey: fi!.pointee.fh) }
            _ = libfuse.fuse_reply_err(req, 0)
        }
        ops.readdir = { req, ino, size, off, fi in FuseMount.directoryPage(req, ino, size, off, fi, plus: false) }
        ops.readdirplus = { req, ino, size, off, fi in FuseMount.directoryPage(req, ino, size, off, fi, plus: true) }
        ops.open = { req, ino, fi in
            let me = FuseMount.fs(req)
            guard fi!.pointee.flags & O_ACCMODE == O_RDONLY else { _ = libfuse.fuse_reply_err(req, EROFS); return }
            do throws(MountFailure) {
                guard let place = try me.tree.place(ino), place.type == .file || place.type == .hardlink else {
                    _ = libfuse.fuse_reply_err(req, (try? me.tree.attributes(ino).kind) == .directory ? EISDIR : EIO)
                    return
                }
                let file = try me.tree.open(ino, place)
                fi!.pointee.fh = me.files.withLock { f in
                    let h = f.next
                    f.next += 1
                    f.open[h] = file
                    return h
                }
                fi!.pointee.keep_cache = 1
                _ = libfuse.fuse_reply_open(req, fi)
            } catch { FuseMount.fail(req, error) }
        }
        ops.read = { req, _, size, off, fi in
            let me = FuseMount.fs(req)
            guard let file = me.files.withLock({ $0.open[fi!.pointee.fh] }) else { _ = libfuse.fuse_reply_err(req, EBADF); return }
            do throws(MountFailure) {
                let bytes = try me.tree.content.read(file, offset: UInt64(off), count: size)
                bytes.withUnsafeBytes { _ = libfuse.fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
            } catch { FuseMount.fail(req, error) }
        }
        ops.release = { req, _, fi in
            _ = FuseMount.fs(req).files.withLock { $0.open.removeValue(forKey: fi!.pointee.fh) }
            _ = libfuse.fuse_reply_err(req, 0)
        }
        ops.statfs = { req, _ in
            var s = statvfs()
            s.f_bsize = 65536
            s.f_frsize = 65536
            s.f_namemax = 255
            s.f_flag = UInt(ST_RDONLY)
            _ = libfuse.fuse_reply_statfs(req, &s)
        }
        ops.getxattr = { req, ino, name, size in
            do throws(MountFailure) {
                let want = FuseMount.bytes(name)
                guard let v = try FuseMount.fs(req).tree.xattrs(ino).first(where: { $0.name == want })?.value else { _ = libfuse.fuse_reply_err(req, ENODATA); return }
                FuseMount.reply(req, v, size)
            } catch { FuseMount.fail(req, error) }
        }
        ops.listxattr = { req, ino, size in
            do throws(MountFailure) {
                FuseMount.reply(req, try FuseMount.fs(req).tree.xattrs(ino).flatMap { $0.name + [0] }, size)
            } catch { FuseMount.fail(req, error) }
        }
        // Writes: the mount is read-only (the kernel answers EROFS first; these are the backstop).
        ops.setattr = { req, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.mknod = { req, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.mkdir = { req, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.unlink = { req, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.rmdir = { req, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.symlink = { req, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.rename = { req, _, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.link = { req, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.write = { req, _, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.setxattr = { req, _, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.removexattr = { req, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
        ops.create = { req, _, _, _, _ in _ = libfuse.fuse_reply_err(req, EROFS) }
    }

    /// An xattr value or name list: its size when asked with size 0, ERANGE when it does not fit.
    private static func reply(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 { _ = libfuse.fuse_reply_xattr(req, value.count); return }
        guard value.count <= size else { _ = libfuse.fuse_reply_err(req, ERANGE); return }
        value.withUnsafeBytes { _ = libfuse.fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// One page of a directory listing: `.`, `..`, then the entries from offset `off`.
    private static func directoryPage(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        let me = fs(req)
        guard let list = me.directories.withLock({ $0.open[fi!.pointee.fh] }) else { _ = libfuse.fuse_reply_err(req, EBADF); return }
        var buf = [CChar](repeating: 0, count: size)
        var used = 0
        var i = Int(off)
        while i < list.count + 2 {
            let name: [UInt8]
            var e = fuse_entry_param()
            if i < 2 {
                name = i == 0 ? [0x2E] : [0x2E, 0x2E]
                e.attr.st_ino = UInt(i == 0 ? ino : FuseMount.rootIno)
                e.attr.st_mode = S_IFDIR
            } else {
                name = list[i - 2].name
                e = entry(list[i - 2].attributes)
            }
            let cname = name.map { CChar(bitPattern: $0) } + [0]
            let n = buf.withUnsafeMutableBufferPointer { b in
                plus ? libfuse.fuse_add_direntry_plus(req, b.baseAddress! + used, size - used, cname, &e, off_t(i + 1))
                    : libfuse.fuse_add_direntry(req, b.baseAddress! + used, size - used, cname, &e.attr, off_t(i + 1))
            }
            if n > size - used { break }
            used += n
            i += 1
        }
        _ = libfuse.fuse_reply_buf(req, buf, used)
    }

    static let rootIno = fuse_ino_t(FUSE_ROOT_ID)
}

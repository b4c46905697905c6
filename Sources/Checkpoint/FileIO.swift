#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSys

func errnoMessage(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

/// A read-only memory mapping of a whole file. Views into it stay valid while the object lives;
/// replacing the file on disk (our writers rename a new inode into place) does not disturb it.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?
    /// The open file (kept for pread and in-kernel copies of ranges), -1 for an empty file.
    let fd: Int32

    public init(path: String) throws {
        self.path = path
        var st = stat()
        if stat(path, &st) != 0 {
            throw CheckpointError(path, errno == ENOENT || errno == ENOTDIR ? .notFound : .io(errnoMessage()))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw CheckpointError(path, .isDirectory) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw CheckpointError(path, .io("cannot open: \(errnoMessage())")) }
        var keep = false
        defer { if !keep { close(fd) } }
        if fstat(fd, &st) != 0 { throw CheckpointError(path, .io(errnoMessage())) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError(path, .invalid("not a regular file")) }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            self.fd = -1
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError(path, .io("cannot map: \(errnoMessage())"))
        }
        base = p
        self.fd = fd
        keep = true
    }

    deinit {
        if let b = base { munmap(b, size) }
        if fd >= 0 { close(fd) }
    }

    /// A copy of [offset, offset+length) read with pread (no page faults on the mapping); nil if the
    /// read fails or comes up short (the caller then copies from the mapping).
    public func read(offset: Int, length: Int) -> [UInt8]? {
        guard fd >= 0, offset >= 0, length >= 0, offset + length <= size else { return nil }
        var ok = true
        let out = [UInt8](unsafeUninitializedCapacity: length) { buf, count in
            var done = 0
            while done < length, let base = buf.baseAddress {
                let n = pread(fd, base + done, length - done, off_t(offset + done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    ok = false
                    break
                }
                done += n
            }
            if !ok { buf.initialize(repeating: 0) }  // every element must be initialized
            count = length
        }
        return ok ? out : nil
    }

    /// The whole mapping. Only valid while `self` is alive.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
    }

    /// Drops the pages of [offset, offset+length) from this process's resident set (they are re-read from
    /// the file if touched again). Streaming readers call it after each tensor, so that reading a whole
    /// model does not grow the resident set by the model's size.
    public func release(offset: Int, length: Int) {
        guard let b = base, length > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let end = min(size, offset + length)
        // Whole pages strictly inside the range only, so a neighbour's page is never dropped while in use.
        let first = offset == 0 ? 0 : ((offset + page - 1) / page) * page
        let last = end == size ? end : (end / page) * page
        if last > first { _ = madvise(b + first, last - first, MADV_DONTNEED) }
    }

    /// Hint the kernel that the mapping will be read sequentially.
    public func adviseSequential() {
        if let b = base { _ = madvise(b, size, MADV_SEQUENTIAL) }
    }
}

public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func fileSize(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    public static func readFile(_ path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        let f = try MappedFile(path: path)
        guard f.size <= limit else { throw CheckpointError(path, .invalid("file of \(f.size) bytes exceeds the \(limit)-byte limit for this kind of file")) }
        return f.withBytes { Array($0) }
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        guard let d = opendir(path) else {
            throw CheckpointError(path, errno == ENOENT ? .notFound : errno == ENOTDIR ? .notDirectory : .io(errnoMessage()))
        }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates a directory and its parents (mode 0755 minus umask); an existing directory is fine.
    public static func makeDirectory(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = dirname(of: path)
        if parent != path && !parent.isEmpty && parent != "." && parent != "/" { try makeDirectory(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw CheckpointError(path, .io("cannot create directory: \(errnoMessage())"))
        }
        if !isDirectory(path) { throw CheckpointError(path, .notDirectory) }
    }

    public static func dirname(of path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        let d = String(p[..<slash])
        return d.isEmpty ? "/" : d
    }

    public static func basename(of path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: slash)...])
    }

    public static func join(_ a: String, _ b: String) -> String {
        if a.isEmpty || b.hasPrefix("/") { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }

    /// Removes a file (not a directory); a missing file is fine.
    public static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw CheckpointError(path, .io("cannot remove: \(errnoMessage())")) }
    }

    /// A new private directory under $TMPDIR (or /tmp).
    public static func makeTemporaryDirectory(prefix: String) throws -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array(join(base, prefix + "XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CheckpointError(base, .io("cannot create a temporary directory: \(errnoMessage())"))
        }
        return String(cString: p)
    }

    /// Removes a directory tree we created (best effort: what cannot be removed stays).
    public static func removeTree(_ path: String) {
        for name in (try? listDirectory(path)) ?? [] {
            let p = join(path, name)
            if isDirectory(p) { removeTree(p) } else { unlink(p) }
        }
        rmdir(path)
    }

    /// Same inode (so "output equals input" can be detected through links and relative paths).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat()
        var sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}

/// Writes a file atomically and durably: a temp file in the target's directory, written through a
/// buffer, fsync'd, given mode 0644 minus umask, renamed over the target, then the directory fsync'd.
/// If anything throws (or `abandon()` is called) the temp file is removed and the target is untouched.
/// Stale temp files of a killed writer (same target, dead pid) are removed by the next writer.
public final class AtomicFileWriter {
    public let path: String
    public private(set) var tempPath: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferCapacity = 1 << 20
    public private(set) var bytesWritten: UInt64 = 0
    private var onDisk: UInt64 = 0  // bytes handed to write(2)
    private var writebackStart: UInt64 = 0  // start of the range not yet handed to write-back
    /// The file system of the temp file (copy_file_range is used within one).
    private lazy var outputDevice: dev_t? = {
        var st = stat()
        return fstat(fd, &st) == 0 ? st.st_dev : nil
    }()
    private var finished = false

    static let tempMarker = ".coto-tmp-"

    public init(path: String) throws {
        self.path = path
        let dir = FileSystem.dirname(of: path)
        let base = FileSystem.basename(of: path)
        if FileSystem.isDirectory(path) { throw CheckpointError(path, .isDirectory) }
        if !FileSystem.isDirectory(dir) { throw CheckpointError(path, .io("directory \(dir) does not exist")) }
        AtomicFileWriter.removeStaleTemps(dir: dir, base: base)
        var template = Array(FileSystem.join(dir, ".\(base)\(AtomicFileWriter.tempMarker)\(getpid())-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw CheckpointError(path, .io("cannot create a temporary file in \(dir): \(errnoMessage())")) }
        self.fd = fd
        self.tempPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        buffer.reserveCapacity(bufferCapacity)
    }

    deinit { if !finished { abandon() } }

    static func removeStaleTemps(dir: String, base: String) {
        let prefix = ".\(base)\(tempMarker)"
        guard let names = try? FileSystem.listDirectory(dir) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]) else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
                unlink(FileSystem.join(dir, name))
            }
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > bufferCapacity { try flushBuffer() }
        if bytes.count >= bufferCapacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        bytesWritten += UInt64(bytes.count)
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Appends [offset, offset+length) of a mapped file, copied inside the kernel when both files are on
    /// one file system (copy_file_range: no trip through user memory; measured slower than a write from
    /// the mapping across file systems), else written from the mapping.
    public func write(from file: MappedFile, offset: Int, length: Int) throws {
        try flushBuffer()
        var done = 0
        var a = stat()
        let sameDevice = file.fd >= 0 && fstat(file.fd, &a) == 0 && a.st_dev == outputDevice
        while done < length && sameDevice {
            let n = coto_copy_range(file.fd, Int64(offset + done), fd, Int64(length - done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }  // unsupported here (ENOSYS, EXDEV, EINVAL...) or short: the rest by write
            done += Int(n)
        }
        if done > 0 {
            try wrote(done)
            bytesWritten += UInt64(done)
        }
        if done < length {
            try file.withBytes { all in
                try write(UnsafeRawBufferPointer(rebasing: all[(offset + done)..<(offset + length)]))
            }
        }
    }

    private func flushBuffer() throws {
        if buffer.isEmpty { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                let msg = errnoMessage()
                abandon()
                throw CheckpointError(path, .io("write failed: \(msg)"))
            }
            off += n
        }
        try wrote(bytes.count)
    }

    /// Bookkeeping after `n` bytes reached the file: write-back of what is written so far starts every
    /// 16 MiB, so the final fsync waits only for the tail and the disk works while the caller computes
    /// (a hint; its failure changes nothing).
    private func wrote(_ n: Int) throws {
        onDisk += UInt64(n)
        if onDisk - writebackStart >= 16 << 20 {
            _ = coto_start_writeback(fd, Int64(writebackStart), Int64(onDisk - writebackStart))
            writebackStart = onDisk
        }
    }

    /// Flush, fsync, chmod, rename into place, fsync the directory.
    public func commit() throws {
        guard !finished else { return }
        try flushBuffer()
        if fsync(fd) != 0 {
            let m = errnoMessage()
            abandon()
            throw CheckpointError(path, .io("fsync failed: \(m)"))
        }
        let mask = umask(0)
        umask(mask)
        _ = fchmod(fd, 0o644 & ~mask)
        close(fd)
        fd = -1
        if rename(tempPath, path) != 0 {
            let m = errnoMessage()
            unlink(tempPath)
            finished = true
            throw CheckpointError(path, .io("cannot rename into place: \(m)"))
        }
        finished = true
        let dfd = open(FileSystem.dirname(of: path), O_RDONLY | O_DIRECTORY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// Drop the temp file; the target keeps its previous content.
    public func abandon() {
        guard !finished else { return }
        finished = true
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(tempPath)
    }

    /// Atomically replace `path` with `bytes`.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let w = try AtomicFileWriter(path: path)
        try w.write(bytes)
        try w.commit()
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }
}

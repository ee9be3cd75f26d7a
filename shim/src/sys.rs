//! Linux system calls without libc: each architecture's numbers and its `syscall` instruction
//! (inline assembly; on powerpc64, where `asm!` is not stable in Rust 1.85, `src/arch/ppc64le.S`).
//! A failure comes back as an [`Errno`], which prints as std's `io::Error` does, so messages
//! match the std shim's.

use core::fmt;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const LSEEK: usize = 8;
    pub const RT_SIGACTION: usize = 13;
    pub const IOCTL: usize = 16;
    pub const SOCKET: usize = 41;
    pub const CONNECT: usize = 42;
    pub const FSTATFS: usize = 138;
    pub const GETDENTS64: usize = 217;
    pub const CLOCK_GETTIME: usize = 228;
    pub const CLOCK_NANOSLEEP: usize = 230;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const UNLINKAT: usize = 263;
    pub const PPOLL: usize = 271;
    pub const RENAMEAT2: usize = 316;
    pub const STATX: usize = 332;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const LSEEK: usize = 62;
    pub const RT_SIGACTION: usize = 134;
    pub const IOCTL: usize = 29;
    pub const SOCKET: usize = 198;
    pub const CONNECT: usize = 203;
    pub const FSTATFS: usize = 44;
    pub const GETDENTS64: usize = 61;
    pub const CLOCK_GETTIME: usize = 113;
    pub const CLOCK_NANOSLEEP: usize = 115;
    pub const EXIT_GROUP: usize = 94;
    pub const OPENAT: usize = 56;
    pub const MKDIRAT: usize = 34;
    pub const UNLINKAT: usize = 35;
    pub const PPOLL: usize = 73;
    pub const RENAMEAT2: usize = 276;
    pub const STATX: usize = 291;
}

/// 32-bit ARM (EABI). The time system calls take the 32-bit `timespec` (`isize` fields here).
#[cfg(target_arch = "arm")]
mod nr {
    pub const READ: usize = 3;
    pub const WRITE: usize = 4;
    pub const CLOSE: usize = 6;
    pub const LSEEK: usize = 19;
    pub const RT_SIGACTION: usize = 174;
    pub const IOCTL: usize = 54;
    pub const SOCKET: usize = 281;
    pub const CONNECT: usize = 283;
    pub const FSTATFS: usize = 100;
    pub const GETDENTS64: usize = 217;
    pub const CLOCK_GETTIME: usize = 263;
    pub const CLOCK_NANOSLEEP: usize = 265;
    pub const EXIT_GROUP: usize = 248;
    pub const OPENAT: usize = 322;
    pub const MKDIRAT: usize = 323;
    pub const UNLINKAT: usize = 328;
    pub const PPOLL: usize = 336;
    pub const RENAMEAT2: usize = 382;
    pub const STATX: usize = 397;
}

#[cfg(target_arch = "s390x")]
mod nr {
    pub const READ: usize = 3;
    pub const WRITE: usize = 4;
    pub const CLOSE: usize = 6;
    pub const LSEEK: usize = 19;
    pub const RT_SIGACTION: usize = 174;
    pub const IOCTL: usize = 54;
    pub const SOCKET: usize = 359;
    pub const CONNECT: usize = 362;
    pub const FSTATFS: usize = 100;
    pub const GETDENTS64: usize = 220;
    pub const CLOCK_GETTIME: usize = 260;
    pub const CLOCK_NANOSLEEP: usize = 262;
    pub const EXIT_GROUP: usize = 248;
    pub const OPENAT: usize = 288;
    pub const MKDIRAT: usize = 289;
    pub const UNLINKAT: usize = 294;
    pub const PPOLL: usize = 302;
    pub const RENAMEAT2: usize = 347;
    pub const STATX: usize = 379;
}

#[cfg(target_arch = "powerpc64")]
mod nr {
    pub const READ: usize = 3;
    pub const WRITE: usize = 4;
    pub const CLOSE: usize = 6;
    pub const LSEEK: usize = 19;
    pub const RT_SIGACTION: usize = 173;
    pub const IOCTL: usize = 54;
    pub const SOCKET: usize = 326;
    pub const CONNECT: usize = 328;
    pub const FSTATFS: usize = 100;
    pub const GETDENTS64: usize = 202;
    pub const CLOCK_GETTIME: usize = 246;
    pub const CLOCK_NANOSLEEP: usize = 248;
    pub const EXIT_GROUP: usize = 234;
    pub const OPENAT: usize = 286;
    pub const MKDIRAT: usize = 287;
    pub const UNLINKAT: usize = 292;
    pub const PPOLL: usize = 281;
    pub const RENAMEAT2: usize = 357;
    pub const STATX: usize = 383;
}

#[cfg(target_arch = "x86_64")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let r: isize;
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") n as isize => r, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5], out("rcx") _, out("r11") _, options(nostack));
    }
    r
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let r: isize;
    unsafe {
        core::arch::asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => r, in("x1") a[1], in("x2") a[2],
            in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    r
}

#[cfg(target_arch = "arm")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let r: isize;
    unsafe {
        core::arch::asm!("svc 0", in("r7") n, inlateout("r0") a[0] as isize => r, in("r1") a[1], in("r2") a[2],
            in("r3") a[3], in("r4") a[4], in("r5") a[5], options(nostack));
    }
    r
}

#[cfg(target_arch = "s390x")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let r: isize;
    unsafe {
        core::arch::asm!("svc 0", in("r1") n, inlateout("r2") a[0] as isize => r, in("r3") a[1], in("r4") a[2],
            in("r5") a[3], in("r6") a[4], in("r7") a[5], options(nostack));
    }
    r
}

#[cfg(target_arch = "powerpc64")]
unsafe extern "C" {
    /// `src/arch/ppc64le.S`: `sc`, with the error as a negative errno.
    fn shim_syscall6(n: usize, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize;
}

#[cfg(target_arch = "powerpc64")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    unsafe { shim_syscall6(n, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// One system call; `Err` carries the errno.
fn call(n: usize, a: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: every caller passes arguments that are valid for its system call: pointers into
    // live buffers of the lengths given.
    let r = unsafe { syscall6(n, a) };
    if (-4095..0).contains(&r) { Err(Errno(-r as i32)) } else { Ok(r as usize) }
}

/// A system call's failure, printed as std prints an `io::Error` (`<strerror> (os error N)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

pub const EINTR: i32 = 4;
pub const ENOENT: i32 = 2;
pub const EAGAIN: i32 = 11;
pub const EEXIST: i32 = 17;
pub const EPIPE: i32 = 32;
pub const ECONNRESET: i32 = 104;
pub const ETIMEDOUT: i32 = 110;

impl Errno {
    /// glibc's `strerror` text, for the errors a shim can meet.
    pub fn text(self) -> &'static str {
        match self.0 {
            1 => "Operation not permitted",
            2 => "No such file or directory",
            4 => "Interrupted system call",
            5 => "Input/output error",
            6 => "No such device or address",
            9 => "Bad file descriptor",
            11 => "Resource temporarily unavailable",
            12 => "Cannot allocate memory",
            13 => "Permission denied",
            17 => "File exists",
            20 => "Not a directory",
            21 => "Is a directory",
            22 => "Invalid argument",
            23 => "Too many open files in system",
            24 => "Too many open files",
            25 => "Inappropriate ioctl for device",
            28 => "No space left on device",
            30 => "Read-only file system",
            32 => "Broken pipe",
            36 => "File name too long",
            40 => "Too many levels of symbolic links",
            88 => "Socket operation on non-socket",
            91 => "Protocol wrong type for socket",
            97 => "Address family not supported by protocol",
            98 => "Address already in use",
            103 => "Software caused connection abort",
            104 => "Connection reset by peer",
            110 => "Connection timed out",
            111 => "Connection refused",
            _ => "",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            "" => write!(f, "Unknown error {} (os error {})", self.0, self.0),
            t => write!(f, "{t} (os error {})", self.0),
        }
    }
}

impl core::error::Error for Errno {}

/// A path for the kernel: NUL-terminated, refused when it holds a NUL itself.
pub struct CPath(alloc::vec::Vec<u8>);

impl CPath {
    pub fn new(path: &str) -> Result<CPath, Errno> {
        let b = path.as_bytes();
        if b.contains(&0) {
            return Err(Errno(22));
        }
        if b.len() >= 4096 {
            return Err(Errno(36));
        }
        let mut v = alloc::vec::Vec::with_capacity(b.len() + 1);
        v.extend_from_slice(b);
        v.push(0);
        Ok(CPath(v))
    }

    fn ptr(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

pub const AT_FDCWD: isize = -100;
pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
#[cfg(not(any(target_arch = "arm", target_arch = "aarch64", target_arch = "powerpc64")))]
pub const O_DIRECTORY: usize = 0o200000;
#[cfg(any(target_arch = "arm", target_arch = "aarch64", target_arch = "powerpc64"))]
pub const O_DIRECTORY: usize = 0o40000;
pub const O_CREAT: usize = 0o100;
pub const O_NOCTTY: usize = 0o400;
pub const O_APPEND: usize = 0o2000;
pub const O_NONBLOCK: usize = 0o4000;
pub const O_CLOEXEC: usize = 0o2000000;
pub const O_PATH: usize = 0o10000000;

/// An open file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(pub i32);

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = call(nr::CLOSE, [self.0 as usize, 0, 0, 0, 0, 0]);
    }
}

pub fn openat(dir: isize, path: &str, flags: usize, mode: usize) -> Result<Fd, Errno> {
    let p = CPath::new(path)?;
    loop {
        match call(nr::OPENAT, [dir as usize, p.ptr(), flags | O_CLOEXEC, mode, 0, 0]) {
            Err(Errno(EINTR)) => continue,
            r => return r.map(|fd| Fd(fd as i32)),
        }
    }
}

pub fn open(path: &str, flags: usize, mode: usize) -> Result<Fd, Errno> {
    openat(AT_FDCWD, path, flags, mode)
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    call(nr::READ, [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0])
}

pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    call(nr::WRITE, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0])
}

/// Writes all of `buf`, retrying short writes and EINTR.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno(EPIPE)),
            Ok(n) => buf = &buf[n..],
            Err(Errno(EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until end of file; more than `max` bytes is an error (EFBIG).
pub fn read_to_end(fd: i32, out: &mut alloc::vec::Vec<u8>, max: usize) -> Result<(), Errno> {
    let mut chunk = [0u8; 16384];
    loop {
        match read(fd, &mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) if out.len() + n > max => return Err(Errno(27)),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(Errno(EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The size of an open file (its end).
pub fn file_size(fd: &Fd) -> Result<u64, Errno> {
    const SEEK_END: usize = 2;
    call(nr::LSEEK, [fd.0 as usize, 0, SEEK_END, 0, 0, 0]).map(|n| n as u64)
}

pub fn mkdir(path: &str, mode: usize) -> Result<(), Errno> {
    let p = CPath::new(path)?;
    call(nr::MKDIRAT, [AT_FDCWD as usize, p.ptr(), mode, 0, 0, 0]).map(drop)
}

pub fn rename(from: &str, to: &str) -> Result<(), Errno> {
    let (f, t) = (CPath::new(from)?, CPath::new(to)?);
    call(nr::RENAMEAT2, [AT_FDCWD as usize, f.ptr(), AT_FDCWD as usize, t.ptr(), 0, 0]).map(drop)
}

pub fn unlink(path: &str) -> Result<(), Errno> {
    let p = CPath::new(path)?;
    call(nr::UNLINKAT, [AT_FDCWD as usize, p.ptr(), 0, 0, 0, 0]).map(drop)
}

/// The modification time of `path` in seconds since the epoch (`statx`).
pub fn mtime(path: &str) -> Result<i64, Errno> {
    let p = CPath::new(path)?;
    const STATX_MTIME: usize = 0x40;
    // struct statx is 256 bytes; stx_mtime.tv_sec is the i64 at offset 0x70.
    let mut buf = [0u64; 32];
    call(nr::STATX, [AT_FDCWD as usize, p.ptr(), 0, STATX_MTIME, buf.as_mut_ptr() as usize, 0])?;
    Ok(buf[0x70 / 8] as i64)
}

/// The names in directory `path` (`getdents64`), without `.` and `..`.
pub fn read_dir(path: &str) -> Result<alloc::vec::Vec<alloc::string::String>, Errno> {
    let fd = open(path, O_RDONLY | O_DIRECTORY, 0)?;
    let mut names = alloc::vec::Vec::new();
    let mut buf = [0u64; 1024];
    loop {
        let n = call(nr::GETDENTS64, [fd.0 as usize, buf.as_mut_ptr() as usize, 8192, 0, 0, 0])?;
        if n == 0 {
            return Ok(names);
        }
        // SAFETY: the kernel wrote n bytes of linux_dirent64 records into buf.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
        let mut at = 0;
        while at + 19 <= n {
            let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
            if reclen == 0 || at + reclen > n {
                break;
            }
            let name = &bytes[at + 19..at + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                names.push(alloc::string::String::from_utf8_lossy(name).into_owned());
            }
            at += reclen;
        }
    }
}

/// `f_type` of the file system holding `fd` (the first field of every architecture's `statfs`;
/// the magic numbers fit its low 32 bits, which come first on the little-endian architectures and
/// are the whole field on s390x and arm).
pub fn fs_type(fd: &Fd) -> Result<u32, Errno> {
    let mut buf = [0u64; 16];
    call(nr::FSTATFS, [fd.0 as usize, buf.as_mut_ptr() as usize, 0, 0, 0, 0])?;
    // SAFETY: buf is 128 bytes, larger than any statfs; the first 4 bytes are initialised.
    Ok(unsafe { *(buf.as_ptr() as *const u32) })
}

/// `ioctl(fd, NS_GET_NSTYPE)`: the kind of namespace an nsfs file is.
pub fn ns_type(fd: &Fd) -> Result<usize, Errno> {
    const NS_GET_NSTYPE: usize = 0xb703;
    call(nr::IOCTL, [fd.0 as usize, NS_GET_NSTYPE, 0, 0, 0, 0])
}

/// `struct timespec` with the platform's `long` (32-bit on arm).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Timespec {
    sec: isize,
    nsec: isize,
}

const CLOCK_REALTIME: usize = 0;
const CLOCK_MONOTONIC: usize = 1;

fn clock(id: usize) -> core::time::Duration {
    let mut t = Timespec::default();
    let _ = call(nr::CLOCK_GETTIME, [id, &mut t as *mut Timespec as usize, 0, 0, 0, 0]);
    core::time::Duration::new(t.sec.max(0) as u64, t.nsec.clamp(0, 999_999_999) as u32)
}

pub fn monotonic() -> core::time::Duration {
    clock(CLOCK_MONOTONIC)
}

/// Time since the epoch.
pub fn realtime() -> core::time::Duration {
    clock(CLOCK_REALTIME)
}

pub fn sleep(d: core::time::Duration) {
    let t = Timespec { sec: d.as_secs().min(isize::MAX as u64) as isize, nsec: d.subsec_nanos() as isize };
    let mut left = Timespec::default();
    let mut req = t;
    // clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem): resumes after a signal.
    while let Err(Errno(EINTR)) = call(
        nr::CLOCK_NANOSLEEP,
        [CLOCK_MONOTONIC, 0, &req as *const Timespec as usize, &mut left as *mut Timespec as usize, 0, 0],
    ) {
        req = left;
    }
}

pub const POLLIN: i16 = 1;
pub const POLLOUT: i16 = 4;
pub const POLLNVAL: i16 = 0x20;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// `ppoll`; `None` waits forever. Returns how many fds are ready (0: timed out).
pub fn poll(fds: &mut [PollFd], timeout: Option<core::time::Duration>) -> Result<usize, Errno> {
    let t =
        timeout.map(|d| Timespec { sec: d.as_secs().min(i32::MAX as u64) as isize, nsec: d.subsec_nanos() as isize });
    let tp = t.as_ref().map_or(0, |t| t as *const Timespec as usize);
    call(nr::PPOLL, [fds.as_mut_ptr() as usize, fds.len(), tp, 0, 0, 0])
}

const AF_UNIX: usize = 1;
const SOCK_STREAM: usize = 1;
const SOCK_NONBLOCK: usize = O_NONBLOCK;

/// `struct sockaddr_un`.
#[repr(C)]
struct SockaddrUn {
    family: u16,
    path: [u8; 108],
}

/// A unix stream socket connected to `path`. A blocking one waits while the daemon's accept
/// backlog is full (as std's `UnixStream::connect`); a non-blocking one says EAGAIN then.
pub fn connect_unix(path: &str, nonblocking: bool) -> Result<Fd, Errno> {
    let mut addr = SockaddrUn { family: AF_UNIX as u16, path: [0; 108] };
    let b = path.as_bytes();
    if b.is_empty() || b.contains(&0) || b.len() >= addr.path.len() {
        return Err(Errno(22));
    }
    addr.path[..b.len()].copy_from_slice(b);
    let flags = SOCK_STREAM | O_CLOEXEC | if nonblocking { SOCK_NONBLOCK } else { 0 };
    let fd = Fd(call(nr::SOCKET, [AF_UNIX, flags, 0, 0, 0, 0])? as i32);
    let len = core::mem::size_of::<SockaddrUn>();
    loop {
        match call(nr::CONNECT, [fd.0 as usize, &addr as *const SockaddrUn as usize, len, 0, 0, 0]) {
            Ok(_) => return Ok(fd),
            Err(Errno(EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Ignores SIGPIPE (a reader that went away is an error to report, not a reason to die).
pub fn ignore_sigpipe() {
    const SIGPIPE: usize = 13;
    const SIG_IGN: usize = 1;
    // handler, flags, restorer, mask: the handler comes first on every architecture we build.
    let act = [SIG_IGN, 0, 0, 0];
    let _ = call(nr::RT_SIGACTION, [SIGPIPE, act.as_ptr() as usize, 0, 8, 0, 0]);
}

pub fn exit(code: i32) -> ! {
    let _ = call(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
    #[allow(clippy::empty_loop)]
    loop {}
}

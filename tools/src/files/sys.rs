//! The two system calls the file services need and the standard library
//! lacks, each in one small function: opening relative to a directory fd
//! (`openat2`, or `openat` where `openat2` is unusable), reading a
//! directory's entries from its fd (`getdents64`), and looking at one of
//! them without opening it (`fstatat`). This is the file
//! services' only unsafe code.

use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// How `open_at` resolves its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// `openat2` with these `RESOLVE_*` flags.
    Openat2(u64),
    /// Plain `openat` (where `openat2` is missing, before Linux 5.6, or refused by a seccomp filter).
    Openat,
}

/// The kernel's `struct open_how` (`openat2(2)`): libc's cannot be built
/// outside libc (it may grow), but the kernel takes this size as version 0.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` relative to `dir` with `flags` (no `O_CREAT`: no mode).
pub(crate) fn open_at(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_int, resolve: Resolve) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: match resolve {
            Resolve::Openat2(r) => r,
            Resolve::Openat => 0,
        },
    };
    let fd = loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid `open_how`
        // of the size passed; both outlive the call, which only reads them.
        // `dir` is an open fd for the call's duration (it is borrowed).
        let fd = unsafe {
            match resolve {
                Resolve::Openat2(_) => libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const OpenHow,
                    size_of::<OpenHow>(),
                ),
                Resolve::Openat => libc::syscall(libc::SYS_openat, dir.as_raw_fd(), path.as_ptr(), flags, 0),
            }
        };
        match fd {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            fd => break fd,
        }
    };
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("the kernel returned no fd"))?;
    // SAFETY: a successful open returned `fd`, a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Fills `buf` with the next `linux_dirent64` records of the directory
/// `dir` (from its file offset on); 0 at its end.
fn getdents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`,
        // which is borrowed mutably for the call; `dir` is open throughout.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        match n {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            n => return usize::try_from(n).map_err(|_| io::Error::other("getdents64 returned a negative count")),
        }
    }
}

/// A directory's entries as `getdents64` gives them, in its order, but
/// `.` and `..`: the first `cap` (name and `d_type`, one of `libc::DT_*`),
/// and how many more there are.
pub(crate) fn entries(dir: BorrowedFd<'_>, cap: usize) -> io::Result<(Vec<(OsString, u8)>, usize)> {
    let mut names = Vec::new();
    let mut more = 0;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = getdents(dir, &mut buf)?;
        if n == 0 {
            return Ok((names, more));
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let mut at = 0;
        while at + 19 <= n {
            let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if reclen < 19 || at + reclen > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a malformed directory entry",
                ));
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                if names.len() < cap {
                    names.push((OsString::from_vec(name.to_vec()), buf[at + 18]));
                } else {
                    more += 1;
                }
            }
            at += reclen;
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: what `name` in `dir` is
/// (a link as itself), without opening it.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` a writable `stat`, both for
    // the call's duration; `dir` is an open fd throughout (it is borrowed).
    let r = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

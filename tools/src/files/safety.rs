//! Which paths may be served, opened without a race. A request's decoded
//! name is first checked by itself ([`relative`]: no `..`, no NUL; leading
//! slashes dropped), then opened beneath the root's directory fd (opened
//! once, at start) with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`:
//! the kernel refuses, during the open itself, any resolution that leaves
//! the root, through `..` or a symlink, so swapping a directory for a link
//! cannot lead outside (there is no check-then-open window).
//!
//! Links are followed while they stay beneath the root, as they always
//! were here: a relative link inside works; a link that leaves, and any
//! absolute link (`RESOLVE_BENEATH` resolves nothing from `/`), is
//! refused. `RESOLVE_NO_SYMLINKS` would refuse the links inside too, and
//! `RESOLVE_IN_ROOT` would serve a link to `/etc/x` from the root's own
//! `etc/x`, which is not what the link says. Where `openat2` cannot be
//! used (kernels before 5.6, or a seccomp filter refusing it: probed once,
//! when the root is opened), each component is opened with `O_NOFOLLOW`
//! from the directory fd instead, and no link is followed at all.
//!
//! A name is resolved to an `O_PATH` fd, which opens nothing, and looked
//! at with `fstat`: a regular file is then opened for reading (through
//! `/proc/self/fd`, the same inode, non-blocking), a directory listed from
//! its fd, and anything else (FIFO, device, socket) refused without ever
//! being opened.

use super::sys::{self, Resolve};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a request gets no file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Nothing there (404).
    NotFound,
    /// There, but not to be served (403): outside the root, not a regular file, ...
    Forbidden(String),
    /// Renames kept racing its lookup (503: try again).
    Busy(String),
    /// The server could not open it (500): out of descriptors, an I/O error
    /// (`serious`: worth a warning), ...
    Failed {
        /// For the log.
        why: String,
        /// Out of descriptors or memory, an I/O error: the server's trouble, not the client's.
        serious: bool,
    },
}

/// A served directory, held open.
#[derive(Clone, Debug)]
pub struct Root {
    /// The directory, opened once: every name is opened beneath it.
    dir: Arc<File>,
    /// Its path when opened, for messages.
    shown: PathBuf,
    /// `openat2` is unusable here: names are walked component by component.
    walk: bool,
}

/// What a request opened.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, and its length.
    File(File, u64),
    /// A directory (for HTTP listings), open for reading its entries.
    Dir(File),
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a decoded NUL.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The path beneath the root that a decoded request name (`/a/b.txt` or
/// `a/b.txt`) names, by itself: its components joined by one `/`, `.` for
/// the root itself; a `..` or a NUL is refused.
pub fn relative(name: &str) -> Result<CString, Denied> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Denied::Forbidden(
                    format!("{name:?} climbs out with ..").replace('\n', " "),
                ));
            }
            p => parts.push(p),
        }
    }
    let rel = if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    };
    CString::new(rel).map_err(|_| Denied::Forbidden(format!("{name:?} holds a NUL")))
}

/// How often an `openat2` that a concurrent rename made fail (`EAGAIN`)
/// is tried again before the client is told to come back (503).
const RACE_RETRIES: usize = 32;

/// Opens `rel` (a [`relative`] path) beneath `dir` with `flags`, never
/// leaving `dir`: `openat2` with `RESOLVE_BENEATH`, or, with `walk`, one
/// component at a time. `EAGAIN` when renames kept racing the lookup.
fn open_beneath(dir: BorrowedFd<'_>, rel: &CStr, flags: libc::c_int, walk: bool) -> io::Result<OwnedFd> {
    if walk {
        return walk_beneath(dir, rel, flags);
    }
    let resolve = Resolve::Openat2(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS);
    let mut raced = 0;
    loop {
        match sys::open_at(dir, rel, flags, resolve) {
            // RESOLVE_BENEATH fails a lookup through `..` that a rename raced.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && raced < RACE_RETRIES => raced += 1,
            r => return r,
        }
    }
}

/// Opens `rel` beneath `dir` one component at a time, each with
/// `O_NOFOLLOW`, each from the fd of the one before: a link on the way
/// fails (`ELOOP`, as a file that is not a directory fails `ENOTDIR`); the
/// last component is opened with `flags | O_NOFOLLOW` (with `O_PATH`, a
/// link there is opened as itself).
fn walk_beneath(dir: BorrowedFd<'_>, rel: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let parts: Vec<&[u8]> = rel.to_bytes().split(|b| *b == b'/').collect();
    let mut at: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        let name = CString::new(*part).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let from = at.as_ref().map_or(dir, |fd| fd.as_fd());
        if i + 1 == parts.len() {
            return sys::open_at(from, &name, flags | libc::O_NOFOLLOW, Resolve::Openat);
        }
        let fd = sys::open_at(
            from,
            &name,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            Resolve::Openat,
        )?;
        let kind = File::from(fd.try_clone()?).metadata()?.file_type();
        if kind.is_symlink() {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        } else if !kind.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        at = Some(fd);
    }
    at.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Why opening `name` failed, as the client is told.
fn denied(name: &str, e: &io::Error) -> Denied {
    match e.raw_os_error() {
        // A component longer than NAME_MAX names nothing there: bad input, not our failure.
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Denied::NotFound,
        Some(libc::EXDEV) => Denied::Forbidden(format!("{name:?} leads outside the served directory")),
        Some(libc::ELOOP) => Denied::Forbidden(format!("{name:?} is a link not followed")),
        Some(libc::EACCES | libc::EPERM) => Denied::Forbidden(format!("{name:?}: permission denied")),
        Some(libc::ENXIO) => Denied::Forbidden(format!("{name:?} is not a regular file")),
        Some(libc::EAGAIN) => Denied::Busy(format!("{name:?}: renames kept racing its lookup")),
        Some(libc::EMFILE | libc::ENFILE | libc::EIO | libc::ENOMEM) => Denied::Failed {
            why: format!("{name:?}: {e}"),
            serious: true,
        },
        _ => Denied::Failed {
            why: format!("{name:?}: {e}"),
            serious: false,
        },
    }
}

impl Root {
    /// The directory `dir`, which must exist: opened now, once. Where
    /// `openat2` cannot be used (a kernel before 5.6, or a seccomp filter
    /// refusing it, as Docker before 20.10 does), names are walked instead.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let mut root = Root::opened(dir)?;
        let probe = sys::open_at(
            root.dir.as_fd(),
            c".",
            libc::O_PATH | libc::O_CLOEXEC,
            Resolve::Openat2(libc::RESOLVE_BENEATH),
        );
        if let Err(e) = probe {
            sys::open_at(root.dir.as_fd(), c".", libc::O_PATH | libc::O_CLOEXEC, Resolve::Openat)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot serve {}: {e}", dir.display())))?;
            log::info!("openat2 is unusable here ({e}): files are opened component by component, following no link");
            root.walk = true;
        }
        Ok(root)
    }

    /// As [`Root::new`], walking names whether `openat2` works or not.
    #[cfg(test)]
    pub(crate) fn walking(dir: &Path) -> io::Result<Root> {
        Ok(Root {
            walk: true,
            ..Root::opened(dir)?
        })
    }

    fn opened(dir: &Path) -> io::Result<Root> {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a directory", dir.display()),
                ),
                _ => io::Error::new(e.kind(), format!("cannot serve {}: {e}", dir.display())),
            })?;
        Ok(Root {
            dir: Arc::new(opened),
            shown: dir.canonicalize().unwrap_or_else(|_| dir.to_owned()),
            walk: false,
        })
    }

    /// The root's path, as it was when opened.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Opens a decoded request name (`/a/b.txt` or `a/b.txt`) beneath the
    /// root: a regular file or a directory, or why not.
    ///
    /// The name is resolved to an `O_PATH` fd first, which opens nothing
    /// (a FIFO or a device sees no `open`), and looked at with `fstat`;
    /// only a regular file or a directory is then opened for reading,
    /// through `/proc/self/fd`, which reopens that very inode.
    pub fn open(&self, name: &str) -> Result<Opened, Denied> {
        let rel = relative(name)?;
        let at = |flags| open_beneath(self.dir.as_fd(), &rel, flags, self.walk).map_err(|e| denied(name, &e));
        let path = File::from(at(libc::O_PATH | libc::O_CLOEXEC)?);
        let meta = path.metadata().map_err(|e| denied(name, &e))?;
        kind(name, &meta)?;
        let reading = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(reading)
            .open(format!("/proc/self/fd/{}", path.as_raw_fd()))
        {
            Ok(file) => file,
            // No /proc: open the name again (non-blocking, checked below).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                log::debug!("no /proc/self/fd: {name:?} is opened by its name again");
                File::from(at(reading)?)
            }
            Err(e) => return Err(denied(name, &e)),
        };
        let opened = file.metadata().map_err(|e| denied(name, &e))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(Denied::Forbidden(format!("{name:?} changed while opened")));
        }
        Ok(match kind(name, &opened)? {
            true => Opened::Dir(file),
            false => Opened::File(file, opened.len()),
        })
    }
}

/// Whether what `meta` describes is a directory (`true`) or a regular file
/// (`false`): nothing else is served.
fn kind(name: &str, meta: &std::fs::Metadata) -> Result<bool, Denied> {
    if meta.is_dir() {
        Ok(true)
    } else if meta.is_file() {
        Ok(false)
    } else if meta.file_type().is_symlink() {
        Err(Denied::Forbidden(format!("{name:?} is a link not followed")))
    } else {
        Err(Denied::Forbidden(format!("{name:?} is not a regular file")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A served directory, and a root on it: walked (`walk`), or as `Root::new` chose.
    fn setup(tag: &str, walk: bool) -> (PathBuf, Root) {
        let base = std::env::temp_dir().join(format!("tunstack-safety-{}-{tag}-{walk}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/sub")).unwrap();
        std::fs::write(base.join("root/hello.txt"), b"hi").unwrap();
        std::fs::write(base.join("root/sub/inner.txt"), b"in").unwrap();
        std::fs::write(base.join("secret.txt"), b"no").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), base.join("root/escape")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", base.join("root/climb")).unwrap();
        std::os::unix::fs::symlink("hello.txt", base.join("root/inside")).unwrap();
        std::os::unix::fs::symlink("../hello.txt", base.join("root/sub/up")).unwrap();
        std::os::unix::fs::symlink(base.join("root/hello.txt"), base.join("root/absolute")).unwrap();
        std::os::unix::fs::symlink("../root/hello.txt", base.join("root/comeback")).unwrap();
        let root = if walk {
            Root::walking(&base.join("root"))
        } else {
            Root::new(&base.join("root"))
        };
        (base, root.unwrap())
    }

    fn contents(r: Result<Opened, Denied>) -> Vec<u8> {
        match r {
            Ok(Opened::File(mut f, len)) => {
                let mut got = Vec::new();
                io::Read::read_to_end(&mut f, &mut got).unwrap();
                assert_eq!(got.len() as u64, len);
                got
            }
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn files_inside_are_served_and_nothing_outside() {
        for walk in [false, true] {
            let (base, r) = setup("inside", walk);
            assert!(!r.walk || walk, "this kernel has openat2, and no filter refuses it");
            assert_eq!(contents(r.open("/hello.txt")), b"hi");
            assert_eq!(contents(r.open("sub//inner.txt")), b"in");
            assert!(matches!(r.open("/sub"), Ok(Opened::Dir(_))));
            assert!(matches!(r.open("/"), Ok(Opened::Dir(_))));
            if walk {
                // The walk follows no link, not even one that stays inside.
                assert!(matches!(r.open("/inside"), Err(Denied::Forbidden(_))));
                assert!(matches!(r.open("/sub/up"), Err(Denied::Forbidden(_))));
            } else {
                assert_eq!(contents(r.open("/inside")), b"hi", "a link that stays inside is fine");
                assert_eq!(contents(r.open("/sub/up")), b"hi", "also through ..");
            }
            assert_eq!(r.open("/missing").unwrap_err(), Denied::NotFound);
            assert_eq!(r.open("/hello.txt/x").unwrap_err(), Denied::NotFound);
            let long = format!("/{}", "n".repeat(300));
            assert_eq!(r.open(&long).unwrap_err(), Denied::NotFound, "ENAMETOOLONG");
            // Through a link to a directory outside, even missing names are forbidden (no probing).
            std::os::unix::fs::symlink(&base, base.join("root/outside")).unwrap();
            assert!(matches!(r.open("/outside/no-such-file"), Err(Denied::Forbidden(_))));
            assert!(matches!(r.open("/outside/secret.txt"), Err(Denied::Forbidden(_))));
            // Absolute links are refused even when they point inside: RESOLVE_BENEATH.
            for bad in [
                "/../secret.txt",
                "../secret.txt",
                "sub/../../secret.txt",
                "/escape",
                "/climb",
                "/absolute",
                "/comeback",
            ] {
                assert!(matches!(r.open(bad), Err(Denied::Forbidden(_))), "{bad}");
            }
            std::fs::remove_dir_all(base).unwrap();
        }
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_never_opened() {
        for walk in [false, true] {
            let (base, r) = setup("fifo", walk);
            let fifo = CString::new(base.join("root/fifo").into_os_string().into_encoded_bytes()).unwrap();
            assert_eq!(mkfifo(&fifo), 0);
            // A writer that waits for a reader: an open for reading would release it.
            let mut writer = std::process::Command::new("sh")
                .args(["-c", "exec 3>\"$0\"; echo opened", fifo.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            assert!(matches!(r.open("/fifo"), Err(Denied::Forbidden(_))));
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(writer.try_wait().unwrap().is_none(), "the FIFO was opened for reading");
            writer.kill().unwrap();
            writer.wait().unwrap();
            std::fs::remove_dir_all(base).unwrap();
        }
    }

    /// mkfifo(1), so the test needs no unsafe of its own.
    fn mkfifo(path: &CStr) -> i32 {
        let status = std::process::Command::new("mkfifo")
            .arg(path.to_str().unwrap())
            .status()
            .unwrap();
        status.code().unwrap_or(-1)
    }

    #[test]
    fn the_walk_follows_no_link() {
        let (base, r) = setup("walk", true);
        let flags = libc::O_RDONLY | libc::O_CLOEXEC;
        let open = |p: &str| walk_beneath(r.dir.as_fd(), &relative(p).unwrap(), flags).map(File::from);
        assert!(open("sub/inner.txt").is_ok());
        assert!(open("/").is_ok());
        for link in ["inside", "escape", "sub/up"] {
            assert_eq!(open(link).unwrap_err().raw_os_error(), Some(libc::ELOOP), "{link}");
        }
        std::os::unix::fs::symlink(&base, base.join("root/outside")).unwrap();
        assert_eq!(
            open("outside/secret.txt").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(open("hello.txt/x").unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn errors_map_to_what_the_client_is_told() {
        let e = |errno| denied("x", &io::Error::from_raw_os_error(errno));
        assert_eq!(e(libc::ENAMETOOLONG), Denied::NotFound, "a client's long name: 404");
        assert!(matches!(e(libc::EAGAIN), Denied::Busy(_)), "renames kept racing: 503");
        assert!(matches!(e(libc::EMFILE), Denied::Failed { serious: true, .. }));
        assert!(matches!(e(libc::EIO), Denied::Failed { serious: true, .. }));
        assert!(matches!(e(libc::EINVAL), Denied::Failed { serious: false, .. }));
        assert!(matches!(e(libc::EXDEV), Denied::Forbidden(_)));
    }

    #[test]
    fn names_are_checked_by_themselves_first() {
        assert_eq!(relative("/a//b/./c").unwrap().as_bytes(), b"a/b/c");
        assert_eq!(relative("/").unwrap().as_bytes(), b".");
        assert_eq!(relative("").unwrap().as_bytes(), b".");
        assert!(matches!(relative("a/../b"), Err(Denied::Forbidden(_))));
        assert!(matches!(relative("a\0b"), Err(Denied::Forbidden(_))));
        assert_eq!(relative("/é/..x").unwrap().as_bytes(), "é/..x".as_bytes());
    }

    #[test]
    fn percent_decoding_catches_encoded_traversal_and_nul() {
        assert_eq!(percent_decode("/%2e%2e/etc/passwd").as_deref(), Some("/../etc/passwd"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("nul%00"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%é"), None, "no escape cut through a character");
        assert_eq!(percent_decode("%c3%a9").as_deref(), Some("é"));
    }
}

//! Where the control socket's file goes: its directory, opened once
//! without following a link and checked, then every step (the stale-file
//! check, the removal, the bind) taken relative to that descriptor, so a
//! path swapped meanwhile leads nowhere else. The daemon's own directory
//! (`/run/tunstack/<name>/`) is made afresh at every start: whatever an
//! earlier holder of its user left in it (a socket answering as the
//! daemon, a FIFO) does not survive.

use super::{ControlConfig, ControlSocket, Peer, error_text, group_id};
use crate::privilege::Identity;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// How deep the daemon's own directory is cleaned: nothing it makes has
/// subdirectories, so anything deeper is not worth following.
const MAX_DEPTH: usize = 8;

/// The longest socket path bind(2) takes (`sun_path`, its NUL excluded).
const SUN_PATH_MAX: usize = 107;

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens directory `name` in `at` (`AT_FDCWD`: the working directory)
/// without following a link: `path` only (O_PATH), or readable.
pub(super) fn open_dir(at: RawFd, name: &OsStr, path_only: bool) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    let mode = if path_only { libc::O_PATH } else { libc::O_RDONLY };
    // SAFETY: openat(2) with a live descriptor (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            mode | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fstat(2) of `fd`.
pub(super) fn stat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data that fstat fills; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor and a live out-parameter.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// What `name` in directory `dir` is, its link not followed; `None` if nothing.
pub(super) fn stat_at(dir: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: as in `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor, a NUL-terminated name, a live out-parameter.
    match check(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
        Ok(()) => Ok(Some(st)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// unlinkat(2): `name` in `dir`; a directory with `AT_REMOVEDIR`.
pub(super) fn unlink_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a live descriptor and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) })
}

fn is(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// A name for `name` in directory `dir` that reaches that very directory
/// (its /proc link), for the calls that take only a path: bind and connect.
pub(super) fn through(dir: RawFd, name: &OsStr) -> io::Result<PathBuf> {
    let path = PathBuf::from(format!("/proc/self/fd/{dir}")).join(name);
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the name {name:?} is too long for a socket"),
        ));
    }
    Ok(path)
}

/// Refuses directory `st` (`what`, for the message) unless it is root's
/// or `users`' and no one else may write to it (or it is sticky, as /tmp
/// is, where no one may remove what is not theirs).
pub(super) fn trusted(st: &libc::stat, what: &Path, users: &[u32], sticky_ok: bool) -> io::Result<()> {
    let owner_ok = st.st_uid == 0 || users.contains(&st.st_uid);
    let open_to_others = st.st_mode & 0o022 != 0 && !(sticky_ok && st.st_mode & libc::S_ISVTX != 0);
    if owner_ok && !open_to_others {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} belongs to uid {} with mode {:o}: a control socket goes only in a directory of root's or the daemon's user \
             that no one else may write to{}",
            what.display(),
            st.st_uid,
            st.st_mode & 0o7777,
            if sticky_ok { " (or a sticky one like /tmp)" } else { "" }
        ),
    ))
}

/// Whether a daemon answers on socket `name` in `dir`: `Some` with who
/// (`pid/program`), for the message.
pub(super) fn answering(dir: RawFd, name: &OsStr) -> io::Result<Option<String>> {
    Ok(UnixStream::connect(through(dir, name)?)
        .ok()
        .map(|s| Peer::of(&s).map_or_else(|| "?".into(), |p| p.who)))
}

/// Makes directory `name` in `parent` afresh, 0700, for the daemon: one
/// already there (made at an earlier start, and given to its user since)
/// is first locked (ours, 0700, so its user can add nothing more),
/// emptied and removed, unless a daemon still answers on `socket` in it.
/// Returns it, readable, still ours: the caller hands it over.
pub(super) fn fresh_dir(parent: RawFd, name: &OsStr, socket: &OsStr, shown: &Path) -> io::Result<OwnedFd> {
    let cname = c_name(name)?;
    if let Some(st) = stat_at(parent, &cname)? {
        if !is(&st, libc::S_IFDIR) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is there and is not a directory: remove it", shown.display()),
            ));
        }
        let old = open_dir(parent, name, false)?;
        if let Some(who) = answering(old.as_raw_fd(), socket)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use (by {who}): is another tunstackd running?",
                    shown.join(socket).display()
                ),
            ));
        }
        empty(&old, 0).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot clear what was left in {}: {e}; remove it by hand",
                    shown.display()
                ),
            )
        })?;
        unlink_at(parent, &cname, libc::AT_REMOVEDIR)?;
    }
    // SAFETY: mkdirat(2) with a live descriptor and a NUL-terminated name.
    check(unsafe { libc::mkdirat(parent, cname.as_ptr(), 0o700) })?;
    let dir = open_dir(parent, name, false)?;
    let st = stat(dir.as_raw_fd())?;
    if st.st_uid != crate::privilege::euid() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "replaced while made"));
    }
    Ok(dir)
}

/// Locks directory `dir` (ours, 0700) and removes everything in it, no
/// link followed.
fn empty(dir: &OwnedFd, depth: usize) -> io::Result<()> {
    let fd = dir.as_raw_fd();
    // SAFETY: fchown/fchmod on a live descriptor; -1 leaves the group.
    check(unsafe { libc::fchown(fd, crate::privilege::euid(), u32::MAX) })?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(fd, 0o700) })?;
    for entry in std::fs::read_dir(format!("/proc/self/fd/{fd}"))? {
        let name = entry?.file_name();
        let cname = c_name(&name)?;
        match stat_at(fd, &cname)? {
            None => {}
            Some(st) if is(&st, libc::S_IFDIR) => {
                if depth >= MAX_DEPTH {
                    return Err(io::Error::other("directories nested too deep"));
                }
                empty(&open_dir(fd, &name, false)?, depth + 1)?;
                unlink_at(fd, &cname, libc::AT_REMOVEDIR)?;
            }
            Some(_) => unlink_at(fd, &cname, 0)?,
        }
    }
    Ok(())
}

/// Creates the socket file, owned by the daemon's user, with mode 0600
/// (0660 and the group's with a group). Its directory is opened once,
/// without following a link, and checked (see [`place`]); everything after
/// goes through that descriptor. The file is made under a umask that keeps
/// it private from the start, and its owner and mode are set through a
/// descriptor of the very file (O_PATH, no link followed). The group is
/// looked up first, and whether the user can remove the file at exit is
/// checked before it exists, so a refusal leaves nothing behind.
pub(super) fn create_socket(cfg: &ControlConfig) -> io::Result<(UnixListener, ControlSocket)> {
    use std::os::fd::AsRawFd;
    let path = &cfg.path;
    let gid = cfg.group.as_deref().map(group_id).transpose()?;
    let failed =
        |what: &str, e: io::Error| io::Error::new(e.kind(), format!("control socket {}: {what}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| failed("no file name", io::ErrorKind::InvalidInput.into()))?;
    let cname = std::ffi::CString::new(name.as_encoded_bytes())
        .map_err(|_| failed("bad name", io::ErrorKind::InvalidInput.into()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let daemon = cfg.owner.as_ref().map_or(crate::privilege::euid(), |o| o.uid);
    let users = [daemon, crate::privilege::euid()];
    // A directory the daemon makes is its user's, so the socket can go at exit.
    let own_dir = cfg.own_dir || std::fs::symlink_metadata(dir).is_err();
    let dir_fd = if own_dir {
        make_own_dir(dir, name, cfg.own_dir, &users, cfg.owner.as_ref()).map_err(|e| {
            failed(
                &format!("cannot create {}", dir.display()),
                io::Error::new(e.kind(), error_text(&e)),
            )
        })?
    } else {
        let fd = open_dir(libc::AT_FDCWD, dir.as_os_str(), true).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR | libc::ELOOP) => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "control socket {}: {} is not a directory",
                    path.display(),
                    dir.display()
                ),
            ),
            _ => failed(&format!("{}", dir.display()), e),
        })?;
        trusted(&stat(fd.as_raw_fd())?, dir, &users, true).map_err(|e| failed("refused", e))?;
        fd
    };
    let at = dir_fd.as_raw_fd();
    if let Some(owner) = &cfg.owner {
        let may = crate::privilege::may_remove_in(dir, owner).map_err(|e| failed(&format!("{}", dir.display()), e))?;
        if !may {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "control socket {}: the daemon runs as {owner} once started, and could not remove it from {} at exit: \
                     choose a --control path in a directory that user may reach and write (or a sticky one like /tmp), or another --user",
                    path.display(),
                    dir.display()
                ),
            ));
        }
    }
    if let Some(st) = stat_at(at, &cname)? {
        // Only a socket nobody answers on is ours to replace; never another file.
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "control socket {}: a file that is not a socket is there",
                    path.display()
                ),
            ));
        }
        if let Some(who) = answering(at, name)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {} is in use (by {who}): is another tunstackd running?",
                    path.display()
                ),
            ));
        }
        // Left behind by a daemon that died.
        unlink_at(at, &cname, 0).map_err(|e| failed("cannot remove a stale one", e))?;
    }
    let through = through(at, name).map_err(|e| failed("cannot bind", e))?;
    let listener = with_umask(0o177, || UnixListener::bind(&through)).map_err(|e| failed("cannot bind", e))?;
    // The file just bound, pinned: a socket of ours, not whatever the name leads to now.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(&through)
        .map_err(|e| failed("vanished", e))?;
    let meta = file.metadata().map_err(|e| failed("vanished", e))?;
    let socket = {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !meta.file_type().is_socket() || meta.uid() != crate::privilege::euid() {
            return Err(failed("replaced while binding", io::ErrorKind::AlreadyExists.into()));
        }
        ControlSocket {
            path: path.clone(),
            name: cname,
            id: (meta.dev(), meta.ino()),
            own_dir: cfg.own_dir.then(|| dir.to_path_buf()),
            dir: dir_fd,
        }
    };
    let uid = cfg.owner.as_ref().map_or(u32::MAX, |o| o.uid);
    let group = gid.or(cfg.owner.as_ref().map(|o| o.gid)).unwrap_or(u32::MAX);
    // SAFETY: fchownat on a live descriptor with an empty path (AT_EMPTY_PATH:
    // the file itself); u32::MAX (-1) leaves an id unchanged.
    if unsafe { libc::fchownat(file.as_raw_fd(), c"".as_ptr(), uid, group, libc::AT_EMPTY_PATH) } != 0 {
        return Err(failed("cannot change its owner", io::Error::last_os_error()));
    }
    if gid.is_some() {
        // No fchmod on an O_PATH descriptor: /proc's link to it reaches the same file.
        std::fs::set_permissions(
            format!("/proc/self/fd/{}", file.as_raw_fd()),
            std::fs::Permissions::from_mode(0o660),
        )
        .map_err(|e| failed("cannot set its mode", e))?;
    }
    Ok((listener, socket))
}

/// Makes the socket's directory `dir` and gives it to `owner`, mode 0755:
/// its parent made if missing (root's, 0755), then opened without
/// following a link and checked (root's or `users`', writable by no one
/// else; sticky will do for a `--control` directory). The daemon's own
/// directory (`fresh`) is made afresh, whatever an earlier start left
/// there removed ([`fresh_dir`]); any other must not exist yet.
fn make_own_dir(
    dir: &Path,
    socket: &std::ffi::OsStr,
    fresh: bool,
    users: &[u32],
    owner: Option<&Identity>,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::DirBuilderExt;
    let up = dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no directory name"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(up)?;
    let parent = open_dir(libc::AT_FDCWD, up.as_os_str(), true)?;
    trusted(&stat(parent.as_raw_fd())?, up, users, !fresh)?;
    let made = if fresh {
        fresh_dir(parent.as_raw_fd(), name, socket, dir)?
    } else {
        let cname = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: mkdirat(2) with a live descriptor and a NUL-terminated name.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
            return Err(io::Error::last_os_error());
        }
        open_dir(parent.as_raw_fd(), name, false)?
    };
    let handle = std::fs::File::from(made);
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&handle, Some(owner.uid), Some(owner.gid))?;
    }
    handle.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    Ok(handle.into())
}

/// Runs `f` with the process's umask set to `mask`, then restores it. The
/// umask is the process's: this runs at start-up, before any thread that
/// creates files.
fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) only swaps a number in the process; it cannot fail.
    let old = unsafe { libc::umask(mask) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tunstack-place-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn the_own_directory_is_made_afresh_and_nothing_left_in_it_survives() {
        let base = scratch("fresh");
        let own = base.join("tun0");
        std::fs::create_dir_all(own.join("sub/deeper")).unwrap();
        std::fs::write(own.join("sub/deeper/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", own.join("control.sock")).unwrap();
        let fifo = CString::new(own.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let parent = open_dir(libc::AT_FDCWD, base.as_os_str(), true).unwrap();
        let dir = fresh_dir(parent.as_raw_fd(), OsStr::new("tun0"), OsStr::new("control.sock"), &own).unwrap();
        assert_eq!(std::fs::read_dir(&own).unwrap().count(), 0, "emptied");
        let meta = std::fs::metadata(&own).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert!(
            std::fs::metadata("/etc/passwd").is_ok(),
            "a link is removed, not followed"
        );

        // A daemon answering there keeps its directory.
        let sock = through(dir.as_raw_fd(), OsStr::new("control.sock")).unwrap();
        let _live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = fresh_dir(parent.as_raw_fd(), OsStr::new("tun0"), OsStr::new("control.sock"), &own).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains("in use (by "), "{e}");

        // A file at the directory's name is not ours to remove.
        std::fs::write(base.join("tun1"), b"").unwrap();
        let e = fresh_dir(
            parent.as_raw_fd(),
            OsStr::new("tun1"),
            OsStr::new("c"),
            &base.join("tun1"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_a_directory_of_roots_or_the_users_that_others_cannot_write_is_trusted() {
        let base = scratch("trusted");
        let st = |mode| {
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode)).unwrap();
            stat(open_dir(libc::AT_FDCWD, base.as_os_str(), true).unwrap().as_raw_fd()).unwrap()
        };
        let me = crate::privilege::euid();
        let stranger = me.wrapping_add(4242);
        assert!(trusted(&st(0o755), &base, &[me], false).is_ok());
        assert!(trusted(&st(0o775), &base, &[me], false).is_err());
        assert!(trusted(&st(0o1777), &base, &[me], true).is_ok());
        assert!(trusted(&st(0o1777), &base, &[me], false).is_err());
        let s = st(0o755);
        if me != 0 {
            assert!(trusted(&s, &base, &[stranger], false).is_err(), "someone else's");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_socket_name_too_long_for_sun_path_is_refused() {
        assert!(through(3, OsStr::new("control.sock")).is_ok());
        let e = through(3, OsStr::new(&"x".repeat(100))).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }
}

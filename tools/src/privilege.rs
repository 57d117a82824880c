//! Least privilege for the daemon: who it runs as once start-up is done,
//! and the drop itself.
//!
//! Only start-up needs root (or CAP_NET_ADMIN): creating and configuring
//! the TUN, opening the capture file, binding the control socket. Then the
//! daemon becomes an ordinary user, as sshd's or ntpd's unprivileged parts
//! do: supplementary groups, then the group, then the user (setgroups,
//! setresgid, setresuid: the user last, since changing it first would take
//! away the right to change the rest), then no capability left in any set
//! and `PR_SET_NO_NEW_PRIVS`. It is done before the daemon starts any thread,
//! so no thread can keep what the main thread gave up (capabilities and, for
//! raw syscalls, ids are per thread); and it is checked afterwards, every
//! thread through /proc, refusing to run if anything is left.
//!
//! Users and groups come from the system's databases through `getpwnam_r`,
//! `getpwuid_r`, `getgrnam_r` and `getgrouplist`, so NSS sources (LDAP,
//! systemd's dynamic users) count.

use std::ffi::{CStr, CString};
use std::io;

/// A user to run as: its ids and supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// For messages: the user's name, or `uid N` for an id with no entry.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (`getgrouplist`, the primary one included).
    pub groups: Vec<u32>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

/// One passwd entry: name, uid and primary gid.
#[derive(Debug)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// Runs a `get*_r` lookup with a buffer that grows on ERANGE. `call` gets
/// the buffer and returns the function's result and whether it found one.
fn lookup<T>(mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>)) -> io::Result<Option<T>> {
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            // getpwnam_r(3): any of these means "no such entry" on some system.
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Ok(None),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (e, _) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The passwd entry of `name`, or of uid `uid`.
fn passwd(by: Result<&str, u32>) -> io::Result<Option<Passwd>> {
    let cname = match by {
        Ok(name) => Some(CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?),
        Err(_) => None,
    };
    lookup(|buf| {
        // SAFETY: passwd is plain data that the call fills; all-zero is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live value of the right type, and
        // buf.len() is the true size of the buffer the strings go into.
        let rc = unsafe {
            match (&cname, by) {
                (Some(n), _) => libc::getpwnam_r(n.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found),
                (None, Err(uid)) => libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found),
                (None, Ok(_)) => unreachable!("a name always has its C string"),
            }
        };
        if found.is_null() {
            return (rc, None);
        }
        // SAFETY: on success pw_name points to a NUL-terminated string in buf.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
        (
            rc,
            Some(Passwd {
                name,
                uid: pw.pw_uid,
                gid: pw.pw_gid,
            }),
        )
    })
}

/// The groups `name` belongs to, its primary group `gid` included.
fn group_list(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    let cname = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: groups holds n entries; getgrouplist writes at most n and
        // sets n to how many there are.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(groups);
        }
        if groups.len() >= 1 << 16 {
            return Err(io::Error::other(format!("{name} is in too many groups")));
        }
        groups.resize((n.max(0) as usize).max(groups.len() * 2), 0);
    }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid(2) takes no arguments and cannot fail.
    unsafe { libc::getegid() }
}

/// The user `spec` names: `USER[:GROUP]`, each a name or a number. A
/// number with no passwd entry is taken as it is (as chown(1) does), with
/// the group of the same number unless GROUP says otherwise, and no
/// supplementary groups.
pub fn parse_user(spec: &str) -> io::Result<Identity> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let no_such = || io::Error::new(io::ErrorKind::NotFound, format!("no user named {user:?}"));
    if user.is_empty() {
        return Err(no_such());
    }
    let mut id = match passwd(Ok(user))? {
        Some(pw) => identity(pw)?,
        None => {
            let uid: u32 = user.parse().map_err(|_| no_such())?;
            match passwd(Err(uid))? {
                Some(pw) => identity(pw)?,
                None => Identity {
                    name: format!("uid {uid}"),
                    uid,
                    gid: uid,
                    groups: Vec::new(),
                },
            }
        }
    };
    if let Some(group) = group {
        id.gid = crate::control::server::group_id(group)?;
        id.groups.retain(|&g| g != id.gid);
        id.groups.insert(0, id.gid);
    }
    no_root_group(id)
}

/// Refuses a user other than root in group 0, primary or supplementary:
/// root's group opens what root's files open to it (often /etc, /root's
/// dot files, devices), which the daemon's unprivileged part has no use for.
fn no_root_group(id: Identity) -> io::Result<Identity> {
    if id.uid != 0 && (id.gid == 0 || id.groups.contains(&0)) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} would run in group 0 (root's){}: choose a user and group with no part in it",
                id.name,
                if id.gid == 0 { "" } else { " as a supplementary group" }
            ),
        ));
    }
    Ok(id)
}

fn identity(pw: Passwd) -> io::Result<Identity> {
    let groups = group_list(&pw.name, pw.gid)?;
    Ok(Identity {
        name: pw.name,
        uid: pw.uid,
        gid: pw.gid,
        groups,
    })
}

/// Who the daemon runs as when `--user` is not given. Started as root:
/// the user who ran `sudo` (SUDO_UID, SUDO_GID), unless that was root;
/// else `nobody` with its own group. Started as another user: that user,
/// whose ids it cannot change.
pub fn default_user() -> io::Result<Identity> {
    if euid() != 0 {
        return Ok(current());
    }
    let env_id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    if let Some(uid) = env_id("SUDO_UID").filter(|&u| u != 0) {
        return sudo_user(uid, env_id("SUDO_GID"));
    }
    match passwd(Ok("nobody"))? {
        Some(pw) => identity(pw),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no user \"nobody\" to run as: name one with --user",
        )),
    }
}

/// The user who ran sudo: uid `uid`, in group `gid` (SUDO_GID) unless
/// that is 0, root's, which sudo reports for a `sudo -g root` or a user
/// whose primary group is root's: then the user's own primary group
/// from passwd, as a login would give.
fn sudo_user(uid: u32, gid: Option<u32>) -> io::Result<Identity> {
    let mut id = parse_user(&uid.to_string())?;
    if let Some(gid) = gid.filter(|&g| g != id.gid && g != 0) {
        id.gid = gid;
        id.groups.retain(|&g| g != gid);
        id.groups.insert(0, gid);
    }
    no_root_group(id)
}

/// The identity the process has now.
fn current() -> Identity {
    let uid = euid();
    let gid = egid();
    let name = passwd(Err(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |pw| pw.name);
    let mut groups = vec![0 as libc::gid_t; 1024];
    // SAFETY: groups holds as many entries as the length passed.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    Identity { name, uid, gid, groups }
}

/// Whether `id` may remove its own file from directory `dir`: search
/// permission on every directory on the way, write and search permission
/// in `dir` itself (by owner, group or other bits; a sticky bit needs the
/// file to be its own too, which the caller sees to). ACLs are not consulted.
pub fn may_remove_in(dir: &std::path::Path, id: &Identity) -> io::Result<bool> {
    if id.uid == 0 {
        return Ok(true);
    }
    let dir = std::fs::canonicalize(dir)?;
    for (i, step) in dir.ancestors().enumerate() {
        let need = if i == 0 { 0o3 } else { 0o1 };
        if permission_bits(&std::fs::metadata(step)?, id) & need != need {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rwx bits of `meta`'s mode that apply to `id`: owner's, group's or others'.
fn permission_bits(meta: &std::fs::Metadata, id: &Identity) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    let bits = if meta.uid() == id.uid {
        mode >> 6
    } else if meta.gid() == id.gid || id.groups.contains(&meta.gid()) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o7
}

/// Becomes `to` for good, keeping no capability, and checks it. Must run
/// before the process starts any thread. `to` being root is allowed (the
/// caller warns): then nothing changes.
pub fn drop_to(to: &Identity) -> io::Result<()> {
    if to.uid == 0 {
        return Ok(());
    }
    let fail = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("cannot {what} to run as {to}: {e}"))
    };
    let was_root = euid() == 0;
    if was_root {
        // An empty bounding set too, while CAP_SETPCAP is still ours: not
        // even an exec could bring a capability back.
        for cap in 0..=last_cap() {
            // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes plain integers.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(fail(&format!("empty the bounding set (capability {cap})")));
            }
        }
    }
    let same = to.uid == euid() && to.gid == egid();
    if !same {
        // SAFETY: the pointer and length describe to.groups exactly.
        if unsafe { libc::setgroups(to.groups.len(), to.groups.as_ptr()) } != 0 {
            return Err(fail("set the groups"));
        }
        // SAFETY: setresgid(2) takes plain ids.
        if unsafe { libc::setresgid(to.gid, to.gid, to.gid) } != 0 {
            return Err(fail("set the group"));
        }
        // SAFETY: setresuid(2) takes plain ids. From root to others it also
        // clears the permitted, effective and ambient sets.
        if unsafe { libc::setresuid(to.uid, to.uid, to.uid) } != 0 {
            return Err(fail("set the user"));
        }
    }
    // Started as a user with capabilities (file capabilities, ambient
    // ones), changing no id kept them: clear every set explicitly.
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes plain integers.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    clear_capabilities().map_err(|e| io::Error::new(e.kind(), format!("cannot drop capabilities: {e}")))?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail("set no_new_privs"));
    }
    verify(to, was_root)
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// capset(2) with every set empty, for the calling thread.
fn clear_capabilities() -> io::Result<()> {
    /// `struct __user_cap_header_struct` of <linux/capability.h>.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    /// `struct __user_cap_data_struct`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two Data, 64 capability bits.
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are the layout capset(2) reads for version
    // 3 (a header and two data structs), alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Checks that every thread runs as `to` with no capability and
/// no_new_privs set (and, if it was started as root, `bounding`, an empty
/// bounding set), and that setuid(0) fails.
pub fn verify(to: &Identity, bounding: bool) -> io::Result<()> {
    let mut problems = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        let status = std::fs::read_to_string(task.path().join("status"))?;
        problems.extend(
            status_problems(&status, to)
                .into_iter()
                .chain(bounding.then(|| bounding_problem(&status)).flatten())
                .map(|p| format!("thread {}: {p}", task.file_name().to_string_lossy())),
        );
    }
    // SAFETY: setuid(2) takes a plain id; it must fail here.
    if unsafe { libc::setuid(0) } == 0 {
        problems.push("setuid(0) succeeded".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("privileges not dropped to {to}: {}", problems.join("; ")),
        ))
    }
}

/// Field `name` of a /proc/<pid>/status text.
fn status_field<'s>(status: &'s str, name: &str) -> Option<&'s str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A capability set of a /proc/<pid>/status text that is not empty (or
/// missing), named.
fn capability_problem(status: &str, name: &str) -> Option<String> {
    match status_field(status, name).map(|v| u64::from_str_radix(v, 16)) {
        Some(Ok(0)) => None,
        other => Some(format!("{name} {other:?}, not 0")),
    }
}

/// A bounding set (`CapBnd`) in a /proc/<pid>/status text that is not
/// empty: checked for a daemon started as root, which could empty it.
pub fn bounding_problem(status: &str) -> Option<String> {
    capability_problem(status, "CapBnd")
}

/// What in a /proc/<pid>/status text shows more privilege than `to` has:
/// an id other than its own, a capability in the effective, permitted,
/// inheritable or ambient set, or no_new_privs unset.
pub fn status_problems(status: &str, to: &Identity) -> Vec<String> {
    let field = |name: &str| status_field(status, name);
    let mut problems = Vec::new();
    for (name, want) in [("Uid", to.uid), ("Gid", to.gid)] {
        match field(name) {
            Some(ids) if ids.split_whitespace().all(|i| i.parse() == Ok(want)) => {}
            other => problems.push(format!("{name} {other:?}, not all {want}")),
        }
    }
    problems.extend(
        ["CapEff", "CapPrm", "CapInh", "CapAmb"]
            .into_iter()
            .filter_map(|name| capability_problem(status, name)),
    );
    if field("NoNewPrivs") != Some("1") {
        problems.push("NoNewPrivs not set".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32) -> Identity {
        Identity {
            name: "u".into(),
            uid,
            gid,
            groups: vec![gid, 100],
        }
    }

    const DROPPED: &str = "Name:\ttunstackd\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";

    #[test]
    fn a_dropped_status_has_no_problem_and_any_leftover_is_named() {
        assert_eq!(status_problems(DROPPED, &user(65534, 65534)), Vec::<String>::new());
        let saved_root = DROPPED.replace("Uid:\t65534\t65534\t65534\t65534", "Uid:\t65534\t65534\t0\t65534");
        assert_eq!(status_problems(&saved_root, &user(65534, 65534)).len(), 1);
        let cap = DROPPED.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000001000");
        assert!(status_problems(&cap, &user(65534, 65534))[0].starts_with("CapEff"));
        let amb = DROPPED.replace("CapAmb:\t0000000000000000\n", "");
        assert!(status_problems(&amb, &user(65534, 65534))[0].starts_with("CapAmb"));
        let inh = DROPPED.replace("CapInh:\t0000000000000000", "CapInh:\t0000000000001000");
        assert!(status_problems(&inh, &user(65534, 65534))[0].starts_with("CapInh"));
        let bnd = DROPPED.replace("CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff");
        assert_eq!(status_problems(&bnd, &user(65534, 65534)), Vec::<String>::new());
        assert!(bounding_problem(&bnd).unwrap().starts_with("CapBnd"));
        assert_eq!(bounding_problem(DROPPED), None);
        let privs = DROPPED.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert_eq!(status_problems(&privs, &user(65534, 65534)), ["NoNewPrivs not set"]);
        assert_eq!(status_problems(DROPPED, &user(1000, 65534)).len(), 1);
    }

    #[test]
    fn users_resolve_by_name_or_number_and_a_bare_number_is_its_own_group() {
        let root = parse_user("root").unwrap();
        assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
        assert_eq!(parse_user("0").unwrap(), root);
        let stray = parse_user("4242").unwrap();
        assert_eq!((stray.uid, stray.gid, stray.groups.len()), (4242, 4242, 0));
        assert_eq!(stray.name, "uid 4242");
        let grouped = parse_user("4242:4343").unwrap();
        assert_eq!(
            (grouped.uid, grouped.gid, grouped.groups.clone()),
            (4242, 4343, vec![4343])
        );
        assert_eq!(parse_user("root:0").unwrap().gid, 0);
        // Root's group is root's alone.
        let e = parse_user("4242:0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("group 0"), "{e}");
        let mut member = user(4242, 4242);
        member.groups = vec![4242, 0];
        assert!(no_root_group(member).unwrap_err().to_string().contains("supplementary"));
        // SUDO_GID=0 with another user: that user's own group instead.
        assert_eq!(sudo_user(4242, Some(0)).unwrap().gid, 4242);
        assert_eq!(sudo_user(4242, Some(4343)).unwrap().gid, 4343);
        assert_eq!(sudo_user(4242, None).unwrap().gid, 4242);
        for bad in ["", "no-such-user-here", "4242:no-such-group-here", ":0"] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn removal_needs_write_and_search_there_and_search_on_the_way() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("tunstack-privilege-{}", std::process::id()));
        let dir = base.join("sockets");
        std::fs::create_dir_all(&dir).unwrap();
        let chmod = |path: &std::path::Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let (uid, gid) = (euid(), egid());
        let other = user(uid.wrapping_add(4242), gid.wrapping_add(4242));
        let member = Identity {
            groups: vec![gid],
            ..other.clone()
        };
        let may = |mode, id: &Identity| {
            chmod(&dir, mode);
            may_remove_in(&dir, id).unwrap()
        };
        chmod(&base, 0o755);
        if uid != 0 {
            let owner = user(uid, gid);
            assert!(may(0o700, &owner));
            assert!(!may(0o500, &owner));
        }
        assert!(!may(0o775, &other));
        assert!(may(0o1777, &other));
        assert!(may(0o770, &member));
        assert!(!may(0o750, &member));
        assert!(may(0o700, &user(0, 0)), "root may");
        // A directory on the way that it may not search stops it.
        chmod(&base, 0o700);
        assert!(!may(0o1777, &other));
        chmod(&base, 0o711);
        assert!(may(0o1777, &other));
        assert!(may_remove_in(&base.join("missing"), &other).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

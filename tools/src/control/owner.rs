//! Who a control client is, what it owns, and how much it may hold.
//!
//! Every client is known by the credentials the kernel recorded when it
//! connected (`SO_PEERCRED`): its uid owns the stack sockets it makes, and
//! the connections accepted for its listeners. Another uid may not reach
//! them; root (uid 0) may, as root may signal or trace any process.
//!
//! Each uid's holdings are bounded, as `RLIMIT_NOFILE` bounds a process's
//! descriptors, and so is the number of clients at once: a client costs a
//! thread, and one user's thousands of idle connections must not starve
//! the others or the daemon.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Control connections open at once, all users together.
pub const MAX_CLIENTS: usize = 1024;
/// Control connections one uid may have open at once.
pub const MAX_CLIENTS_PER_UID: usize = 256;
/// Stack sockets one uid may own at once: bridged sockets (each on a
/// control connection of its own) and accepted connections not yet
/// attached. Linux's default soft `RLIMIT_NOFILE` is the same number.
pub const MAX_SOCKETS_PER_UID: usize = 1024;
/// Big replies (`SOCKETS`, `STATS`) built or being sent at once, all
/// users: each may be megabytes while its client takes it.
pub const MAX_BIG_REPLIES: usize = 8;
/// Big replies one uid may have built or being sent at once.
pub const MAX_BIG_REPLIES_PER_UID: usize = 2;
/// Ports below this one are privileged: only root may listen or bind on
/// them (Linux's `net.ipv4.ip_unprivileged_port_start`).
pub const UNPRIVILEGED_PORT_START: u16 = 1024;

/// The process at the other end of a control connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its user id: what owns the sockets it makes.
    pub uid: u32,
    /// `pid/program`, as `SOCKETS` shows an owner.
    pub who: String,
}

impl Peer {
    /// The credentials the kernel recorded when `client` connected; `None`
    /// if it cannot tell (never for a Unix stream socket on Linux).
    pub fn of(client: &UnixStream) -> Option<Peer> {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred and len are live, correctly sized out-parameters for SO_PEERCRED.
        let rc = unsafe {
            libc::getsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", cred.pid)).unwrap_or_default();
        Some(Peer {
            uid: cred.uid,
            who: format!("{}/{}", cred.pid, comm.trim()),
        })
    }

    /// Whether this peer may use what `owner` owns: its own, or anything for root.
    pub fn may_use(&self, owner: u32) -> bool {
        self.uid == owner || self.uid == 0
    }

    /// Refuses a privileged port to anyone but root, as Linux's `bind(2)`
    /// does (EACCES) to a process without CAP_NET_BIND_SERVICE. Port 0
    /// (an ephemeral one) is never privileged.
    pub fn may_bind(&self, port: u16) -> io::Result<()> {
        if port != 0 && port < UNPRIVILEGED_PORT_START && self.uid != 0 {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        Ok(())
    }
}

/// A fresh 64-bit id from the kernel's random source, unguessable by
/// other clients (getrandom(2), falling back to /dev/urandom).
pub fn random_id() -> io::Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        match n {
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => {
                use std::io::Read;
                std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
                break;
            }
        }
    }
    Ok(u64::from_ne_bytes(b))
}

/// Caps on clients and sockets, for [`Accounts`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Control connections at once, all users.
    pub clients: usize,
    /// Control connections at once per uid.
    pub clients_per_uid: usize,
    /// Stack sockets per uid.
    pub sockets_per_uid: usize,
    /// Big replies at once, all users.
    pub big_replies: usize,
    /// Big replies at once per uid.
    pub big_replies_per_uid: usize,
}

/// Descriptors kept for the daemon's own use (its TUN, its log, the files
/// it serves) when control clients are bounded by [`Limits::for_descriptors`].
pub const DESCRIPTOR_RESERVE: u64 = 64;

impl Limits {
    /// The defaults, with fewer clients if `nofile` descriptors (the soft
    /// `RLIMIT_NOFILE`) could not hold them (a client holds one) and
    /// [`DESCRIPTOR_RESERVE`]; a quarter of them at the very least.
    pub fn for_descriptors(nofile: u64) -> Limits {
        let room = nofile.saturating_sub(DESCRIPTOR_RESERVE).max(nofile / 4).max(1);
        let clients = MAX_CLIENTS.min(usize::try_from(room).unwrap_or(usize::MAX));
        Limits {
            clients,
            clients_per_uid: MAX_CLIENTS_PER_UID.min(clients),
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            clients: MAX_CLIENTS,
            clients_per_uid: MAX_CLIENTS_PER_UID,
            sockets_per_uid: MAX_SOCKETS_PER_UID,
            big_replies: MAX_BIG_REPLIES,
            big_replies_per_uid: MAX_BIG_REPLIES_PER_UID,
        }
    }
}

/// What each uid holds now.
#[derive(Debug, Default)]
struct Usage {
    clients: usize,
    sockets: usize,
    big_replies: usize,
}

#[derive(Debug, Default)]
struct Books {
    clients: usize,
    big_replies: usize,
    by_uid: HashMap<u32, Usage>,
}

/// The owner label a client's stack socket carries: its uid, then what
/// `SOCKETS` shows (`pid/program`), so whose it is never depends on a
/// pid or a program name, which two users' clients may share.
pub fn label(uid: u32, who: &str) -> String {
    format!("{uid}:{who}")
}

/// A socket's owner label split: the uid of the client that made it and
/// what to show; a label with no uid (a built-in service's) is the daemon's.
pub fn split_label(label: &str) -> (Option<u32>, &str) {
    match label.split_once(':').map(|(u, shown)| (u.parse::<u32>(), shown)) {
        Some((Ok(uid), shown)) => (Some(uid), shown),
        _ => (None, label),
    }
}

/// The daemon's count of clients and sockets, by uid.
#[derive(Debug)]
pub struct Accounts {
    limits: Limits,
    books: Mutex<Books>,
    /// Signalled when a big reply is done.
    reply_done: std::sync::Condvar,
}

impl Accounts {
    /// Empty books under `limits`.
    pub fn new(limits: Limits) -> Arc<Accounts> {
        Arc::new(Accounts {
            limits,
            books: Mutex::new(Books::default()),
            reply_done: std::sync::Condvar::new(),
        })
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts in a new client of `uid`, or says why it may not come in. Root is held to its own per-uid bound only, so that
    /// the daemon's administrator gets in while other users fill the rest
    /// (as Linux keeps some of its tables' last entries for root).
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<ClientSlot, String> {
        let mut b = self.books();
        if b.clients >= self.limits.clients && uid != 0 {
            return Err(format!("too many control connections ({})", self.limits.clients));
        }
        let u = b.by_uid.entry(uid).or_default();
        if u.clients >= self.limits.clients_per_uid {
            return Err(format!(
                "too many control connections for uid {uid} ({})",
                self.limits.clients_per_uid
            ));
        }
        u.clients += 1;
        b.clients += 1;
        Ok(ClientSlot {
            accounts: self.clone(),
            uid,
        })
    }

    /// Counts in a new socket for `uid`; EMFILE ("Too many open files")
    /// when it holds its limit already, as for a process at its `RLIMIT_NOFILE`.
    pub fn socket(self: &Arc<Self>, uid: u32) -> io::Result<SocketSlot> {
        let mut b = self.books();
        let u = b.by_uid.entry(uid).or_default();
        if u.sockets >= self.limits.sockets_per_uid {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        u.sockets += 1;
        Ok(SocketSlot {
            accounts: self.clone(),
            uid,
        })
    }

    /// Counts in a big reply for `uid`, waiting for one to be done until
    /// `until` if there are as many as allowed; `None` if none was by then.
    /// Root is held to its own per-uid bound only, as in [`Accounts::admit`].
    pub fn big_reply(self: &Arc<Self>, uid: u32, until: std::time::Instant) -> Option<ReplySlot> {
        let mut b = self.books();
        loop {
            let mine = b.by_uid.get(&uid).map_or(0, |u| u.big_replies);
            if mine < self.limits.big_replies_per_uid && (uid == 0 || b.big_replies < self.limits.big_replies) {
                b.big_replies += 1;
                b.by_uid.entry(uid).or_default().big_replies += 1;
                return Some(ReplySlot {
                    accounts: self.clone(),
                    uid,
                });
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            b = self
                .reply_done
                .wait_timeout(b, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes one back from `uid`'s count: a client, else a socket.
    fn release(&self, uid: u32, client: bool) {
        let mut b = self.books();
        if client {
            b.clients -= 1;
        }
        let u = b.by_uid.get_mut(&uid).expect("counted in");
        if client {
            u.clients -= 1;
        } else {
            u.sockets -= 1;
        }
        if u.clients == 0 && u.sockets == 0 && u.big_replies == 0 {
            b.by_uid.remove(&uid);
        }
    }
}

/// A big reply counted in; counted out when dropped.
#[derive(Debug)]
pub struct ReplySlot {
    accounts: Arc<Accounts>,
    uid: u32,
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        let mut b = self.accounts.books();
        b.big_replies -= 1;
        let u = b.by_uid.get_mut(&self.uid).expect("counted in");
        u.big_replies -= 1;
        if u.clients == 0 && u.sockets == 0 && u.big_replies == 0 {
            b.by_uid.remove(&self.uid);
        }
        drop(b);
        self.accounts.reply_done.notify_all();
    }
}

/// A client counted in; counted out when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    accounts: Arc<Accounts>,
    uid: u32,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.accounts.release(self.uid, true);
    }
}

/// A socket counted in for its owner; counted out when dropped.
#[derive(Debug)]
pub struct SocketSlot {
    accounts: Arc<Accounts>,
    uid: u32,
}

impl SocketSlot {
    /// The uid that owns the socket.
    pub fn owner(&self) -> u32 {
        self.uid
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.accounts.release(self.uid, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_and_sockets_are_bounded_per_uid_and_given_back() {
        let a = Accounts::new(Limits {
            clients: 3,
            clients_per_uid: 2,
            sockets_per_uid: 2,
            ..Limits::default()
        });
        let c1 = a.admit(1000).unwrap();
        let c2 = a.admit(1000).unwrap();
        assert_eq!(
            a.admit(1000).unwrap_err(),
            "too many control connections for uid 1000 (2)"
        );
        let _c3 = a.admit(1001).unwrap();
        assert_eq!(a.admit(1002).unwrap_err(), "too many control connections (3)");
        let _root = a.admit(0).expect("root is held to its own bound only");
        drop((c1, c2));
        let _c4 = a.admit(1002).unwrap();
        // Whose a socket is comes with it, whatever its pid and program.
        assert_eq!(split_label(&label(1000, "10/a:b")), (Some(1000), "10/a:b"));
        assert_eq!(split_label("echo"), (None, "echo"));
        assert_eq!(split_label("x:y"), (None, "x:y"));

        let s1 = a.socket(1000).unwrap();
        let _s2 = a.socket(1000).unwrap();
        let e = a.socket(1000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(a.socket(1001).unwrap().owner(), 1001, "another uid has its own count");
        drop(s1);
        assert!(a.socket(1000).is_ok());
    }

    #[test]
    fn big_replies_are_bounded_and_a_waiting_one_goes_when_another_is_done() {
        let a = Accounts::new(Limits {
            big_replies: 3,
            big_replies_per_uid: 2,
            ..Limits::default()
        });
        let now = std::time::Instant::now;
        let soon = || now() + std::time::Duration::from_millis(50);
        let (r1, _r2) = (a.big_reply(1000, soon()).unwrap(), a.big_reply(1000, soon()).unwrap());
        assert!(a.big_reply(1000, soon()).is_none(), "its own bound");
        let _r3 = a.big_reply(1001, soon()).unwrap();
        assert!(a.big_reply(1002, soon()).is_none(), "everyone's bound");
        let root = a.big_reply(0, soon()).expect("root is held to its own bound only");
        drop(root);
        // One waiting gets in as soon as one is done.
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || a.big_reply(1002, now() + std::time::Duration::from_secs(20)).is_some())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(r1);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn clients_are_bounded_by_the_descriptors_there_are() {
        let l = Limits::for_descriptors(1 << 20);
        assert_eq!((l.clients, l.clients_per_uid), (MAX_CLIENTS, MAX_CLIENTS_PER_UID));
        let l = Limits::for_descriptors(1024);
        assert_eq!((l.clients, l.clients_per_uid), (960, MAX_CLIENTS_PER_UID));
        let l = Limits::for_descriptors(64);
        assert_eq!((l.clients, l.clients_per_uid), (16, 16));
        assert_eq!(Limits::for_descriptors(0).clients, 1);
    }

    #[test]
    fn only_the_owner_or_root_may_use_a_socket_and_only_root_binds_low_ports() {
        let p = |uid| Peer { uid, who: "1/x".into() };
        assert!(p(1000).may_use(1000));
        assert!(!p(1001).may_use(1000));
        assert!(p(0).may_use(1000));
        assert!(p(1000).may_bind(1024).is_ok());
        assert!(p(1000).may_bind(0).is_ok());
        assert_eq!(
            p(1000).may_bind(80).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        assert!(p(0).may_bind(80).is_ok());
    }

    #[test]
    fn ids_are_random() {
        let ids: std::collections::HashSet<u64> = (0..64).map(|_| random_id().unwrap()).collect();
        assert_eq!(ids.len(), 64);
    }
}

//! File services over tunstack's TCP: the tutorial's file downloader done
//! right, and an HTTP/1.1 file server. Both serve regular files under one
//! directory and nothing else, stream from disk with bounded buffers, and
//! protect themselves from long connections: a per-client-address
//! connection limit and an idle timeout.

pub mod downloader;
pub mod http;
pub mod safety;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tunstack::net::{TcpListener, TcpStream};
use tunstack::runtime::Stack;

/// How the file services run.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// The directory served.
    pub root: PathBuf,
    /// Port of the downloader protocol.
    pub downloader_port: u16,
    /// Port of the HTTP server.
    pub http_port: u16,
    /// Connections one client address may hold at once.
    pub per_client: usize,
    /// A connection with nothing to read or write for this long is closed.
    pub idle_timeout: Duration,
}

/// Connections per client address, shared by both services.
#[derive(Debug, Default)]
pub struct ClientLimits {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A counted connection; the count drops with it.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ClientLimits>,
    ip: IpAddr,
}

impl ClientLimits {
    /// Takes a slot for `peer`, or `None` if it holds `max` already.
    pub fn take(self: &Arc<Self>, peer: SocketAddr, max: usize) -> Option<Slot> {
        let mut counts = self.counts.lock().expect("limits");
        let c = counts.entry(peer.ip()).or_insert(0);
        if *c >= max {
            return None;
        }
        *c += 1;
        Some(Slot {
            limits: self.clone(),
            ip: peer.ip(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().expect("limits");
        if let Some(c) = counts.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What a service does with a connection over the limit, and with one within it.
pub(crate) trait Service: Send + Sync + 'static {
    /// Name for logs and netstat.
    const NAME: &'static str;
    /// Tells a client over its limit no (RST, or HTTP 503).
    fn refuse(&self, conn: TcpStream);
    /// Serves a connection.
    fn serve(&self, conn: &TcpStream, peer: SocketAddr) -> io::Result<()>;
}

/// Accepts on `port` and serves each connection on its own thread.
pub(crate) fn run<S: Service>(
    stack: &Stack,
    port: u16,
    cfg: &FilesConfig,
    limits: Arc<ClientLimits>,
    service: S,
) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(stack, (Ipv4Addr::UNSPECIFIED, port))?;
    listener.set_owner(S::NAME);
    log::info!(
        "{} serving {} on {}",
        S::NAME,
        cfg.root.display(),
        listener.local_addr()?
    );
    let service = Arc::new(service);
    let (per_client, idle) = (cfg.per_client, cfg.idle_timeout);
    std::thread::Builder::new().name(S::NAME.into()).spawn(move || {
        loop {
            let (conn, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::NetworkDown => break,
                Err(e) => {
                    log::debug!("{}: accept: {e}", S::NAME);
                    continue;
                }
            };
            let Some(slot) = limits.take(peer, per_client) else {
                log::info!("{}: {peer} holds {per_client} connections already: refused", S::NAME);
                // Never on the accept thread: a slow client must not hold up everyone else.
                let service = service.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("{} refuse", S::NAME))
                    .spawn(move || service.refuse(conn));
                continue;
            };
            let service = service.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{} {peer}", S::NAME))
                .spawn(move || {
                    let _slot = slot;
                    let _ = conn.set_read_timeout(Some(idle));
                    let _ = conn.set_write_timeout(Some(idle));
                    if let Err(e) = service.serve(&conn, peer) {
                        log::debug!("{}: {peer}: {e}", S::NAME);
                    }
                });
            if let Err(e) = spawned {
                log::warn!("{}: no thread for {peer}: {e}", S::NAME);
            }
        }
    })
}

/// Starts both services.
pub fn start(stack: &Stack, cfg: FilesConfig) -> io::Result<()> {
    let root = safety::Root::new(&cfg.root)?;
    let limits = Arc::new(ClientLimits::default());
    run(
        stack,
        cfg.downloader_port,
        &cfg,
        limits.clone(),
        downloader::Downloader { root: root.clone() },
    )?;
    run(stack, cfg.http_port, &cfg, limits, http::Http { root })?;
    Ok(())
}

/// Whether an I/O error means the idle timeout passed.
pub(crate) fn is_idle(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut
}

//! File services over tunstack's TCP: the tutorial's file downloader done
//! right, and an HTTP/1.1 file server. Both serve regular files under one
//! directory and nothing else, stream from disk with bounded buffers, and
//! protect themselves from long connections: a per-client-address
//! connection limit and an idle timeout. Each runs event-driven on one
//! thread of its own (`server`), however many connections it holds.

pub mod downloader;
pub mod http;
mod listing;
pub mod request;
pub mod safety;
mod server;
mod sys;
#[cfg(test)]
mod testing;

use server::Service;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tunstack::net::TcpListener;
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

/// Binds `port` and serves it with `service` on a thread of its own.
fn run<S: Service>(
    stack: &Stack,
    port: u16,
    cfg: &FilesConfig,
    clients: Arc<ClientLimits>,
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
    let limits = server::Limits {
        clients,
        per_client: cfg.per_client,
        idle: cfg.idle_timeout,
    };
    server::spawn(stack, listener, service, limits)
}

/// Starts both services, each event-driven on a thread of its own.
pub fn start(stack: &Stack, cfg: FilesConfig) -> io::Result<()> {
    start_sharing(stack, cfg, Arc::new(ClientLimits::default()))
}

/// As [`start`], counting connections per client address in `limits`,
/// shared with other services (tunstackd's echo, discard and source).
pub fn start_sharing(stack: &Stack, cfg: FilesConfig, limits: Arc<ClientLimits>) -> io::Result<()> {
    let root = safety::Root::new(&cfg.root)?;
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

//! The file services on an in-memory stack, for unit tests: clients on the
//! same stack reach them over its loopback path.

use super::{FilesConfig, start};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use tunstack::device::memory::MemoryLink;
use tunstack::iface::{Config, Interface};
use tunstack::net::TcpStream;
use tunstack::runtime::Stack;

/// The services' address.
pub(crate) const US: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The downloader's port.
pub(crate) const DOWNLOADER: u16 = 2000;
/// The HTTP port.
pub(crate) const HTTP: u16 = 80;
/// How long a test waits for what must happen.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A served directory (`small.txt`, `big.bin` of `big` bytes, `sub/`) and a
/// stack running both services on it; both go on drop.
pub(crate) struct Site {
    pub stack: Stack,
    pub dir: PathBuf,
    _link: MemoryLink,
}

/// The bytes of `big.bin`.
pub(crate) fn big_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

impl Site {
    /// A site named `tag` (unique per test), with the given limits.
    pub fn new(tag: &str, big: usize, per_client: usize, idle_timeout: Duration) -> Site {
        let dir = std::env::temp_dir().join(format!("tunstack-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("small.txt"), b"hello\n").unwrap();
        std::fs::write(dir.join("big.bin"), big_data(big)).unwrap();
        let (link, peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(Config::new("10.200.0.2/24".parse().unwrap())), link).unwrap();
        let cfg = FilesConfig {
            root: dir.clone(),
            downloader_port: DOWNLOADER,
            http_port: HTTP,
            per_client,
            idle_timeout,
        };
        start(&stack, cfg).unwrap();
        Site {
            stack,
            dir,
            _link: peer,
        }
    }

    /// A blocking client connection to `port`, reads bounded by [`PATIENCE`].
    pub fn connect(&self, port: u16) -> TcpStream {
        self.try_connect(port).unwrap()
    }

    /// The same, or the error of a connection refused at once (a service
    /// over its limit may reset it before `connect` returns).
    pub fn try_connect(&self, port: u16) -> io::Result<TcpStream> {
        let s = TcpStream::connect(&self.stack, (US, port))?;
        s.set_read_timeout(Some(PATIENCE))?;
        Ok(s)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.stack.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP response as a client reads it.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response from `s` (its body too unless `head_only`).
pub(crate) fn read_response(s: &TcpStream, head_only: bool) -> Response {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = (&*s).read(&mut b).unwrap();
        assert_eq!(
            n,
            1,
            "the connection ended within a head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).expect("a status code");
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        r.body = vec![0; len];
        (&*s).read_exact(&mut r.body).unwrap();
    }
    r
}

/// Sends `request` on `s`.
pub(crate) fn send(s: &TcpStream, request: &str) {
    (&*s).write_all(request.as_bytes()).unwrap();
}

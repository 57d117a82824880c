//! tunstackd: creates a TUN interface, configures the host side, and runs
//! tunstack's own stack on it, with built-in services, until SIGINT,
//! SIGTERM, SIGHUP or SIGQUIT (each a clean exit: the TUN and the control
//! socket go).
//!
//! Only start-up is privileged: once the TUN is configured, the capture
//! file open and the control socket bound, and before any thread starts,
//! the daemon becomes `--user` (by default the user who ran sudo, else
//! nobody), with no capability left (see `tunstack_tools::privilege`).
//!
//! SIGUSR1 prints all its counters as one `stats: name=value ...` line.
//! If the stack thread dies (a panic), the daemon exits with status 1 and
//! the panic's message, cleaning up as on SIGTERM.
//!
//! Start-up checks every flag it can before creating anything, and says what
//! is wrong in one line; what it then creates (TUN and stack, control socket
//! file) is held by guards, so an error on the way undoes it all.

use clap::Parser;
#[cfg(debug_assertions)]
use signal_hook::consts::SIGUSR2;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;
use tunstack::Ipv4Cidr;
use tunstack::device::impair::{Direction, ImpairConfig};
use tunstack::device::tun::Offload;
use tunstack::runtime::{Stack, TunConfig};
use tunstack::tcp::MemoryLimits;
use tunstack::tcp::{CongestionAlgorithm, SynCookies};
use tunstack_tools::args::{buffer_size, memory_limits, millis, positive_seconds, probability, seconds};
use tunstack_tools::privilege::{self, Identity};
use tunstack_tools::{control, services};

/// tunstackd, the daemon: creates a TUN interface and runs tunstack's own TCP/IP stack on it, with built-in services and a control socket, until SIGINT, SIGTERM, SIGHUP or SIGQUIT.
///
/// Start it as root (or with CAP_NET_ADMIN): only start-up needs it. Once the TUN is up and the control socket bound, it runs as --user with no capability.
///
/// Once it has started, `ping 10.200.0.2` from the host; the `tunstack` command-line tools reach the stack through the control socket.
#[derive(Debug, Parser)]
#[command(name = "tunstackd", version)]
struct Args {
    /// Name of the TUN interface to create.
    #[arg(short, long, default_value = "tun0")]
    interface: String,

    /// The stack's own address and subnet.
    #[arg(short, long, default_value = "10.200.0.2/24")]
    address: Ipv4Cidr,

    /// The host side's address on the TUN (also the stack's default gateway).
    #[arg(long, default_value = "10.200.0.1/24")]
    host_address: Ipv4Cidr,

    /// Leave the host side alone: do not assign its address (the MTU is still set and the link brought up).
    #[arg(long)]
    no_configure_host: bool,

    /// Link MTU, 68 to 65535.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(68..=65535))]
    mtu: u32,

    /// Do not answer echo requests sent to a broadcast address.
    #[arg(long)]
    ignore_broadcast_ping: bool,

    /// Seed for the stack's randomness (IP IDs, ephemeral ports, TCP's ISN and timestamp keys). Default: from the OS.
    #[arg(long)]
    seed: Option<u64>,

    /// Port of the UDP echo service.
    #[arg(long, default_value_t = 7, value_name = "PORT")]
    udp_echo: u16,

    /// Do not run the UDP echo service.
    #[arg(long)]
    no_udp_echo: bool,

    /// Port of the TCP echo service.
    #[arg(long, default_value_t = 7, value_name = "PORT")]
    tcp_echo: u16,

    /// Do not run the TCP echo service.
    #[arg(long)]
    no_tcp_echo: bool,

    /// Port of the TCP discard service.
    #[arg(long, default_value_t = 9, value_name = "PORT")]
    discard: u16,

    /// Do not run the TCP discard service.
    #[arg(long)]
    no_discard: bool,

    /// Port of the TCP character generator (RFC 864: sends chargen lines from the connect on).
    #[arg(long, default_value_t = 19, value_name = "PORT")]
    source: u16,

    /// Do not run the TCP character generator.
    #[arg(long)]
    no_source: bool,

    /// Port of the TCP sized source (sends as many bytes as the client's line asks, or an endless stream).
    #[arg(long, default_value_t = 1919, value_name = "PORT")]
    sized_source: u16,

    /// Do not run the TCP sized source.
    #[arg(long)]
    no_sized_source: bool,

    /// TCP maximum segment lifetime in seconds; TIME-WAIT lasts twice this.
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = seconds)]
    msl: Duration,

    /// Seconds a connection its application closed may sit in FIN-WAIT-2 before it is reset (Linux's tcp_fin_timeout).
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = seconds)]
    fin_timeout: Duration,

    /// Retransmissions or zero-window probes a closed connection still sending (FIN-WAIT-1, CLOSING, LAST-ACK) gets before it is given up; only progress restarts the count (Linux's tcp_orphan_retries).
    #[arg(long, default_value_t = 8, value_name = "N")]
    orphan_retries: u32,

    /// Closed connections still finishing held at most; closing one more resets it (Linux's tcp_max_orphans).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_orphans: usize,

    /// TIME-WAIT entries held at most; beyond, a connection is freed at once (Linux's tcp_max_tw_buckets).
    #[arg(long, default_value_t = 16384, value_name = "N")]
    max_tw_buckets: usize,

    /// TCP congestion control of the stack's connections.
    #[arg(long, value_enum, default_value_t = Congestion::Cubic)]
    congestion: Congestion,

    /// Largest TCP receive buffer per connection, 4K to 1G (auto-tuning grows towards it; Linux's tcp_rmem max).
    #[arg(long, default_value = "6M", value_name = "BYTES", value_parser = buffer_size)]
    recv_buffer: usize,

    /// Largest TCP send buffer per connection, 4K to 1G (auto-tuning grows towards it; Linux's tcp_wmem max, but 1M: see the README).
    #[arg(long, default_value = "1M", value_name = "BYTES", value_parser = buffer_size)]
    send_buffer: usize,

    /// TCP connections the stack holds at most, in any state but LISTEN: past it a SYN is dropped and a connect fails (ENOBUFS).
    #[arg(long, default_value_t = 32_768, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    max_connections: u64,

    /// Budget for all TCP buffer memory, as Linux's tcp_mem in bytes: MAX (pressure from 3/4 of it, over below 1/2) or MIN,PRESSURE,MAX. Under pressure windows clamp and buffers stop growing; at MAX buffers grow no further than a page.
    #[arg(long, default_value = "64M", value_name = "BYTES", value_parser = memory_limits)]
    tcp_mem: MemoryLimits,

    /// When listeners answer SYNs with SYN cookies and keep no state: on (when a listener's SYN queue is full), off, or always (Linux's tcp_syncookies 1, 0, 2).
    #[arg(long, value_enum, default_value_t = Syncookies::On, value_name = "WHEN")]
    syncookies: Syncookies,

    /// How long the stack thread keeps reading the TUN after small packets (none over 256 bytes), or a stream of bulk segments closer than this, before it sleeps, 0 to 1000 microseconds (0: off; Linux's busy_poll).
    #[arg(long, default_value_t = 25, value_name = "MICROS", value_parser = clap::value_parser!(u64).range(0..=1000))]
    busy_poll: u64,

    /// Serve the files under DIR: the downloader protocol and HTTP/1.1 (off by default).
    #[arg(long, value_name = "DIR")]
    files: Option<std::path::PathBuf>,

    /// Port of the downloader protocol (with --files).
    #[arg(long, default_value_t = 2000, value_name = "PORT")]
    downloader_port: u16,

    /// Port of the HTTP server (with --files).
    #[arg(long, default_value_t = 80, value_name = "PORT")]
    http_port: u16,

    /// Connections one client address may hold at once to the TCP services (echo, discard, source and the file services, counted together).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_per_client: u64,

    /// Seconds a TCP service connection may move no byte either way before it is closed.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = positive_seconds)]
    idle_timeout: Duration,

    /// Path of the control socket (default: /run/tunstack/<interface>/control.sock; /run/tunstack/<interface>-netns<inode>/control.sock outside the machine's own network namespace). Its directory must let --user remove it at exit.
    #[arg(long, value_name = "PATH")]
    control: Option<std::path::PathBuf>,

    /// A group whose members may use the control socket too (default: only the daemon's user).
    #[arg(long, value_name = "GROUP")]
    control_group: Option<String>,

    /// TUN offloads (the virtio-net header): TCP super-packets of up to 64 KiB each way, cut into MSS-sized segments by the host kernel, and checksums left to it. auto: on if the kernel takes them, else off (RUST_LOG=info says why); on: refuse to start without them; off: plain packets.
    #[arg(long, default_value_t = Offload::Auto, value_name = "MODE", value_parser = offload_mode())]
    offload: Offload,

    /// Write every packet in and out to FILE as pcap (read it with tcpdump -r or Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,

    /// Who to run as once start-up is done, by name or id: USER or USER:GROUP (default: the user who ran sudo, else nobody). An id with no passwd entry is taken as it is, with the group of the same number. `root` keeps every privilege (with a warning).
    #[arg(long, value_name = "USER[:GROUP]")]
    user: Option<String>,

    #[command(flatten)]
    impair: ImpairArgs,
}

/// Link impairment, done by the daemon itself (this needs no netem).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Impairment")]
struct ImpairArgs {
    /// Probability of dropping a packet (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    loss: f64,
    /// Probability of sending a packet twice.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    duplicate: f64,
    /// Probability of holding a packet back so later ones overtake it.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    reorder: f64,
    /// Probability of flipping a bit in a packet.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    corrupt: f64,
    /// Delay added to every packet, in milliseconds.
    #[arg(long, default_value = "0", value_name = "MS", value_parser = millis)]
    delay: Duration,
    /// Extra random delay up to this many milliseconds.
    #[arg(long, default_value = "0", value_name = "MS", value_parser = millis)]
    jitter: Duration,
    /// Link rate in megabits per second (0: unlimited).
    #[arg(long, default_value_t = 0.0, value_name = "MBIT")]
    rate: f64,
    /// Which packets are impaired: in (host to stack), out (stack to host) or both.
    #[arg(long, value_enum, default_value_t = ImpairDirection::Both)]
    impair_direction: ImpairDirection,
}

/// `--impair-direction`'s choices. The variants carry no doc comments on
/// purpose: clap would print them as a list, and the flag's help already
/// says what each means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImpairDirection {
    In,
    Out,
    Both,
}

impl From<ImpairDirection> for Direction {
    fn from(d: ImpairDirection) -> Direction {
        match d {
            ImpairDirection::In => Direction::In,
            ImpairDirection::Out => Direction::Out,
            ImpairDirection::Both => Direction::Both,
        }
    }
}

impl ImpairArgs {
    fn config(&self) -> (ImpairConfig, Direction) {
        let cfg = ImpairConfig {
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
            corrupt: self.corrupt,
            delay: self.delay,
            jitter: self.jitter,
            rate_bps: (self.rate > 0.0).then_some((self.rate * 1e6) as u64),
            ..ImpairConfig::default()
        };
        (cfg, self.impair_direction.into())
    }
}

/// `--congestion`'s choices (no doc comments, for the reason given at
/// `ImpairDirection`): CUBIC with HyStart++ (RFC 9438, 9406), or NewReno (RFC 6582).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Congestion {
    Cubic,
    Newreno,
}

impl From<Congestion> for CongestionAlgorithm {
    fn from(c: Congestion) -> CongestionAlgorithm {
        match c {
            Congestion::Cubic => CongestionAlgorithm::Cubic,
            Congestion::Newreno => CongestionAlgorithm::NewReno,
        }
    }
}

/// `--syncookies`' choices (no doc comments, for the reason given at
/// `ImpairDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Syncookies {
    On,
    Off,
    Always,
}

impl From<Syncookies> for SynCookies {
    fn from(s: Syncookies) -> SynCookies {
        match s {
            Syncookies::On => SynCookies::On,
            Syncookies::Off => SynCookies::Off,
            Syncookies::Always => SynCookies::Always,
        }
    }
}

/// `--offload`'s parser: its three values listed in `--help`, parsed as
/// the library spells them.
fn offload_mode() -> impl clap::builder::TypedValueParser<Value = Offload> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["auto", "on", "off"]).try_map(|s| s.parse::<Offload>())
}

/// The built-in services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    UdpEcho,
    TcpEcho,
    Discard,
    Downloader,
    Http,
    Source,
    SizedSource,
}

impl Service {
    /// Its name in the start-up line and in messages.
    fn name(self) -> &'static str {
        match self {
            Service::UdpEcho => "udp echo",
            Service::TcpEcho => "tcp echo",
            Service::Discard => "discard",
            Service::Downloader => "downloader",
            Service::Http => "http",
            Service::Source => "chargen",
            Service::SizedSource => "sized source",
        }
    }

    /// The flag that moves it.
    fn flag(self) -> &'static str {
        match self {
            Service::UdpEcho => "--udp-echo",
            Service::TcpEcho => "--tcp-echo",
            Service::Discard => "--discard",
            Service::Downloader => "--downloader-port",
            Service::Http => "--http-port",
            Service::Source => "--source",
            Service::SizedSource => "--sized-source",
        }
    }

    fn proto(self) -> &'static str {
        if self == Service::UdpEcho { "udp" } else { "tcp" }
    }
}

impl Args {
    /// The services these flags run, with their ports, in the order they start.
    fn services(&self) -> Vec<(Service, u16)> {
        let files = self.files.is_some();
        [
            (!self.no_udp_echo, Service::UdpEcho, self.udp_echo),
            (!self.no_tcp_echo, Service::TcpEcho, self.tcp_echo),
            (!self.no_discard, Service::Discard, self.discard),
            (files, Service::Downloader, self.downloader_port),
            (files, Service::Http, self.http_port),
            (!self.no_source, Service::Source, self.source),
            (!self.no_sized_source, Service::SizedSource, self.sized_source),
        ]
        .into_iter()
        .filter_map(|(on, service, port)| on.then_some((service, port)))
        .collect()
    }

    /// The stack and host side these flags describe.
    fn tun_config(&self) -> TunConfig {
        TunConfig {
            name: self.interface.clone(),
            address: self.address,
            host_address: self.host_address,
            configure_host: !self.no_configure_host,
            mtu: self.mtu as usize,
            seed: self.seed,
            answer_broadcast_echo: !self.ignore_broadcast_ping,
            msl: self.msl,
            congestion: self.congestion.into(),
            recv_buffer: self.recv_buffer,
            send_buffer: self.send_buffer,
            syncookies: self.syncookies.into(),
            fin_timeout: self.fin_timeout,
            orphan_retries: self.orphan_retries,
            max_orphans: self.max_orphans,
            max_tw_buckets: self.max_tw_buckets,
            max_connections: self.max_connections as usize,
            tcp_memory: self.tcp_mem,
            busy_poll: Duration::from_micros(self.busy_poll),
            pcap: self.pcap.clone(),
            impair: Some(self.impair.config()),
            offload: self.offload,
        }
    }
}

/// The first two services that want one port of one protocol, named by
/// their flags. Port 0 (any free port) never clashes.
fn port_clash(services: &[(Service, u16)]) -> Option<String> {
    services.iter().enumerate().find_map(|(i, &(later, port))| {
        let &(earlier, _) = services[..i]
            .iter()
            .find(|&&(s, p)| p != 0 && p == port && s.proto() == later.proto())?;
        Some(format!(
            "{} {port}: port {port}/{} is already taken by the {} service ({} {port})",
            later.flag(),
            later.proto(),
            earlier.name(),
            earlier.flag()
        ))
    })
}

/// Every check that needs nothing created: a refusal here leaves nothing
/// behind. Returns who the daemon is to run as.
fn preflight(args: &Args, cfg: &TunConfig) -> io::Result<Identity> {
    if let Some(clash) = port_clash(&args.services()) {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, clash));
    }
    cfg.check_addresses().map_err(|e| {
        let flags = e.subject(cfg, "--address", "--host-address");
        io::Error::new(io::ErrorKind::InvalidInput, format!("{flags}: {e}"))
    })?;
    if let Some(conflict) = cfg.host_subnet_conflict()? {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{conflict}; choose another --address/--host-address"),
        ));
    }
    if let Some(group) = &args.control_group {
        control::server::group_id(group)
            .map_err(|e| io::Error::new(e.kind(), format!("--control-group {group}: {e}")))?;
    }
    if let Some(dir) = &args.files {
        tunstack_tools::files::safety::Root::new(dir).map_err(|e| io::Error::new(e.kind(), format!("--files: {e}")))?;
    }
    match &args.user {
        Some(spec) => privilege::parse_user(spec).map_err(|e| io::Error::new(e.kind(), format!("--user {spec}: {e}"))),
        None => privilege::default_user(),
    }
}

/// The running stack, shut down when dropped (its TUN goes with its thread):
/// at exit, and on any start-up error after the TUN was made.
struct Running(Stack);

/// A file start-up creates (the `--pcap` capture): removed if start-up
/// fails, kept once the daemon runs.
struct NewFile(Option<std::path::PathBuf>);

impl NewFile {
    /// Guards `path` if there is no file there yet (an existing one is not ours).
    fn guard(path: Option<&std::path::Path>) -> NewFile {
        NewFile(path.filter(|p| !p.exists()).map(std::path::Path::to_path_buf))
    }

    /// Start-up went through: the file stays.
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

fn run(args: Args) -> io::Result<()> {
    let cfg = args.tun_config();
    let user = preflight(&args, &cfg)?;
    if !args.address.contains(args.host_address.addr()) {
        log::warn!(
            "host side {} is outside the stack's subnet {}: the stack reaches it only through its default route",
            args.host_address,
            args.address
        );
    }
    // Register signals before anything runs, so none is missed.
    let mut signals = Signals::new(
        [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1]
            .iter()
            .chain(TEST_FAULT_SIGNAL),
    )?;
    // From here on each thing made is owned by a guard, so an error on the
    // way out undoes everything in reverse order: socket file, then stack and
    // TUN, then the capture file (which, made by root, stays if the error
    // comes after the drop and its directory is root's).
    let mut capture = NewFile::guard(args.pcap.as_deref());
    let link = cfg.open().map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => io::Error::new(
            e.kind(),
            format!("{e}: creating a TUN interface needs root (try sudo) or CAP_NET_ADMIN"),
        ),
        _ => e,
    })?;
    let name = link.name().to_owned();
    // Said in the start-up line: `auto` may have found the kernel unwilling.
    let offloads = if link.offload() == Offload::On { "on" } else { "off" };
    let bound = control::server::bind(control::server::ControlConfig {
        path: args.control.clone().unwrap_or_else(|| control::default_path(&name)),
        group: args.control_group.clone(),
        ifname: name.clone(),
        offloads: link.offload() == Offload::On,
        owner: Some(user.clone()),
        own_dir: args.control.is_none(),
    })?;
    log::info!("control socket at {}", bound.path().display());

    // While it may: each control client holds a descriptor.
    control::server::raise_descriptor_limit();
    // Everything privileged is done, and no thread runs yet: drop it all.
    privilege::drop_to(&user)?;
    if user.uid == 0 {
        log::warn!("running as root (uid 0): the daemon keeps every privilege for its whole life");
    } else {
        log::info!("running as {user}, with no capability");
    }
    if args.user.is_none() && user.name == "nobody" {
        // At info: a default start says one line and nothing else (the
        // README says this too, for those who do not raise the log level).
        log::info!(
            "running as nobody: other processes running as nobody share that account and could reach the control socket's directory; \
             give --user a dedicated account for unattended use"
        );
    }

    let running = Running(link.start()?);
    let stack = &running.0;
    let control = control::server::start(stack, bound)?;

    let mut offered = Vec::new();
    let mut simple = services::Services::new(stack);
    // Every TCP service counts connections per client address together.
    let clients = std::sync::Arc::new(tunstack_tools::files::ClientLimits::default());
    simple.limit(services::ServiceLimits {
        clients: clients.clone(),
        per_client: args.max_per_client as usize,
        idle: args.idle_timeout,
    });
    for (service, port) in args.services() {
        match service {
            Service::UdpEcho => simple.udp_echo(port)?,
            Service::TcpEcho => simple.tcp_echo(port)?,
            Service::Discard => simple.tcp_discard(port)?,
            Service::Source => simple.tcp_source(port)?,
            Service::SizedSource => simple.tcp_sized_source(port)?,
            Service::Downloader => {
                let dir = args.files.clone().expect("file services only with --files");
                // Opened as the daemon's user: it serves what that user may read.
                let unreadable =
                    |e: io::Error| io::Error::new(e.kind(), format!("--files {}: as {user}: {e}", dir.display()));
                tunstack_tools::files::start_sharing(
                    stack,
                    tunstack_tools::files::FilesConfig {
                        root: dir.clone(),
                        downloader_port: args.downloader_port,
                        http_port: args.http_port,
                        per_client: args.max_per_client as usize,
                        idle_timeout: args.idle_timeout,
                    },
                    clients.clone(),
                )
                .map_err(unreadable)?;
                offered.push(format!(
                    "files from {}: downloader :{}, http :{}",
                    dir.display(),
                    args.downloader_port,
                    args.http_port
                ));
                continue;
            }
            // Started with the downloader: they share a directory and client limits.
            Service::Http => continue,
        }
        offered.push(format!("{} :{port}", service.name()));
    }
    // Echo, discard, source and UDP echo run event-driven on the stack
    // thread itself: no wake-up between the stack and these services.
    simple.start_on_stack_thread()?;

    let host = if args.no_configure_host {
        "host side left unconfigured".to_owned()
    } else {
        format!("host side {}", args.host_address)
    };
    let services = if offered.is_empty() {
        "no services".to_owned()
    } else {
        offered.join(", ")
    };
    let ip = args.address.addr();
    println!(
        "tunstackd[{}]: owns {name} (stack {}, {host}, MTU {}, offloads {}; {services}); try: ping {ip}, nc {ip} {}",
        std::process::id(),
        args.address,
        args.mtu,
        offloads,
        args.tcp_echo
    );
    io::stdout().flush()?;
    capture.keep();
    log::info!("running on {name}; SIGUSR1 prints counters, SIGINT/SIGTERM/SIGHUP/SIGQUIT stop");

    // A stack thread that dies (a panic in the core) ends the daemon: the
    // watcher closes the signal loop, and the exit is a failure that says why.
    let watcher = {
        let (stack, signals) = (stack.clone(), signals.handle());
        std::thread::Builder::new().name("stack-watch".into()).spawn(move || {
            stack.wait_stopped(None);
            signals.close();
        })?
    };
    for sig in signals.forever() {
        match sig {
            SIGUSR1 => print_stats(stack),
            #[cfg(debug_assertions)]
            SIGUSR2 => stack.inject_panic("SIGUSR2: test-only fault injection (debug builds)"),
            _ => break,
        }
    }
    // One way out, however the loop ended: the stack stops, the socket file
    // goes, the counters are printed (tun0 goes with the process); a stack
    // thread that had died makes it a failure that says why.
    let outcome = stack.shutdown();
    drop(control);
    print_stats(stack);
    let _ = watcher.join();
    outcome?;
    log::info!("stopped; {name} goes away with us");
    Ok(())
}

/// In debug builds only, SIGUSR2 makes the stack thread panic, for the
/// tests of what a dead stack thread does (a signal, not a flag or a
/// control command: it comes at the moment the test chooses, adds nothing
/// to the control protocol, and release builds leave SIGUSR2 alone).
#[cfg(debug_assertions)]
const TEST_FAULT_SIGNAL: &[i32] = &[SIGUSR2];
#[cfg(not(debug_assertions))]
const TEST_FAULT_SIGNAL: &[i32] = &[];

/// Prints every counter (the stack's, the impairment's, a census of the
/// sockets: what `STATS` answers) as one `stats: name=value ...` line. A
/// closed stdout loses the line but never stops the daemon.
fn print_stats(stack: &Stack) {
    let counters: Vec<String> = control::server::counters(stack)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "stats: {}", counters.join(" ")).and_then(|()| out.flush()) {
        log::debug!("stats not printed: {e}");
    }
}

fn main() -> ExitCode {
    // Quiet by default: the start-up line, then warnings and errors only.
    // RUST_LOG=info shows the services starting and refused requests; debug, every state change.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunstackd: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_durations_and_a_direction() {
        <Args as clap::CommandFactory>::command().debug_assert();
        let a = Args::try_parse_from(["tunstackd"]).unwrap();
        assert_eq!(
            (a.msl, a.idle_timeout),
            (Duration::from_secs(30), Duration::from_secs(60))
        );
        assert_eq!(a.impair.impair_direction, ImpairDirection::Both);
        assert_eq!(a.impair.delay, Duration::ZERO);
        let a =
            Args::try_parse_from(["tunstackd", "--msl", "0.2", "--delay", "20", "--impair-direction", "in"]).unwrap();
        assert_eq!(
            (a.msl, a.impair.delay),
            (Duration::from_millis(200), Duration::from_millis(20))
        );
        assert_eq!(Direction::from(a.impair.impair_direction), Direction::In);
        assert!(Args::try_parse_from(["tunstackd", "--impair-direction", "sideways"]).is_err());
        assert!(Args::try_parse_from(["tunstackd", "--idle-timeout", "NaN"]).is_err());
    }

    #[test]
    fn orphan_and_time_wait_limits_default_to_the_stacks_and_parse() {
        let tcp = tunstack::tcp::TcpConfig::default();
        let c = Args::try_parse_from(["tunstackd"]).unwrap().tun_config();
        assert_eq!(
            (c.fin_timeout, c.orphan_retries, c.max_orphans, c.max_tw_buckets),
            (tcp.fin_timeout, tcp.orphan_retries, tcp.max_orphans, tcp.max_tw_buckets)
        );
        let args = [
            "tunstackd",
            "--fin-timeout",
            "2.5",
            "--orphan-retries",
            "3",
            "--max-orphans",
            "10",
            "--max-tw-buckets",
            "20",
        ];
        let c = Args::try_parse_from(args).unwrap().tun_config();
        assert_eq!(
            (c.fin_timeout, c.orphan_retries, c.max_orphans, c.max_tw_buckets),
            (Duration::from_millis(2500), 3, 10, 20)
        );
    }

    #[test]
    fn congestion_control_is_cubic_unless_newreno_is_asked_for() {
        let stack = |args: &[&str]| {
            let a = Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied())).unwrap();
            a.tun_config().congestion
        };
        assert_eq!(stack(&[]), CongestionAlgorithm::Cubic);
        assert_eq!(stack(&["--congestion", "newreno"]), CongestionAlgorithm::NewReno);
        assert_eq!(stack(&["--congestion", "cubic"]), CongestionAlgorithm::Cubic);
        assert!(Args::try_parse_from(["tunstackd", "--congestion", "bbr"]).is_err());
    }

    #[test]
    fn buffer_caps_default_to_linux_and_follow_the_flags() {
        let cfg = |args: &[&str]| {
            let a = Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied())).unwrap();
            let c = a.tun_config();
            (c.recv_buffer, c.send_buffer)
        };
        let linux = tunstack::tcp::TcpConfig::default();
        assert_eq!(cfg(&[]), (linux.recv_buffer, linux.send_buffer));
        assert_eq!(
            cfg(&["--recv-buffer", "16M", "--send-buffer", "256K"]),
            (16 << 20, 256 << 10)
        );
        assert!(Args::try_parse_from(["tunstackd", "--recv-buffer", "2G"]).is_err());
    }

    #[test]
    fn limits_default_as_documented_and_follow_the_flags() {
        let parse = |args: &[&str]| Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied()));
        let limits = |args: &[&str]| {
            let c = parse(args).unwrap().tun_config();
            (c.max_connections, c.tcp_memory)
        };
        let stack = tunstack::tcp::TcpConfig::default();
        assert_eq!(limits(&[]), (stack.max_connections, stack.memory));
        assert_eq!(limits(&[]), (32_768, MemoryLimits::with_max(64 << 20)));
        assert_eq!(
            limits(&["--max-connections", "100", "--tcp-mem", "1M,2M,4M"]),
            (
                100,
                MemoryLimits {
                    min: 1 << 20,
                    pressure: 2 << 20,
                    max: 4 << 20
                }
            )
        );
        assert_eq!(limits(&["--tcp-mem", "128M"]).1, MemoryLimits::with_max(128 << 20));
        for bad in [
            &["--max-connections", "0"][..],
            &["--tcp-mem", "4M,2M,1M"],
            &["--tcp-mem", "100K"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn syncookies_default_to_linux_and_follow_the_flag() {
        let when = |args: &[&str]| {
            let a = Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied())).unwrap();
            a.tun_config().syncookies
        };
        assert_eq!(when(&[]), tunstack::tcp::TcpConfig::default().syncookies);
        assert_eq!(when(&[]), SynCookies::On);
        assert_eq!(when(&["--syncookies", "off"]), SynCookies::Off);
        assert_eq!(when(&["--syncookies", "always"]), SynCookies::Always);
        assert!(Args::try_parse_from(["tunstackd", "--syncookies", "2"]).is_err());
    }

    #[test]
    fn offloads_are_auto_unless_the_flag_says_on_or_off() {
        let parse = |args: &[&str]| Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied()));
        assert_eq!(parse(&[]).unwrap().tun_config().offload, Offload::Auto);
        assert_eq!(parse(&["--offload", "on"]).unwrap().tun_config().offload, Offload::On);
        assert_eq!(parse(&["--offload", "off"]).unwrap().tun_config().offload, Offload::Off);
        let e = parse(&["--offload", "yes"]).unwrap_err().to_string();
        assert!(e.contains("[possible values: auto, on, off]"), "{e}");
    }

    fn clash(args: &[&str]) -> Option<String> {
        let a = Args::try_parse_from(std::iter::once("tunstackd").chain(args.iter().copied())).unwrap();
        port_clash(&a.services())
    }

    #[test]
    fn services_clash_on_one_port_of_one_protocol_and_the_message_names_both() {
        // Echo on 7 over TCP and over UDP is the default, and no clash.
        assert_eq!(clash(&[]), None);
        assert_eq!(clash(&["--files", "/srv"]), None);
        assert_eq!(
            clash(&["--files", "/srv", "--http-port", "7"]).as_deref(),
            Some("--http-port 7: port 7/tcp is already taken by the tcp echo service (--tcp-echo 7)")
        );
        assert_eq!(
            clash(&["--source", "9"]).as_deref(),
            Some("--source 9: port 9/tcp is already taken by the discard service (--discard 9)")
        );
        assert_eq!(
            clash(&["--files", "/srv", "--downloader-port", "80"]).as_deref(),
            Some("--http-port 80: port 80/tcp is already taken by the downloader service (--downloader-port 80)")
        );
        // A service that is off, or on the other protocol, takes nothing.
        assert_eq!(clash(&["--files", "/srv", "--http-port", "7", "--no-tcp-echo"]), None);
        assert_eq!(clash(&["--udp-echo", "9"]), None);
        assert_eq!(clash(&["--http-port", "7"]), None, "no file services without --files");
        // Port 0 is any free port, one each.
        assert_eq!(clash(&["--discard", "0", "--source", "0"]), None);
    }
}

//! tunstackd: creates a TUN interface, configures the host side, and runs
//! tunstack's own IPv4/ICMP stack on it until SIGINT or SIGTERM.
//!
//! SIGUSR1 prints the stack's counters as one `stats: name=value ...` line.

use clap::Parser;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tunstack::device::tun::TunDevice;
use tunstack::runtime::Driver;
use tunstack::{Config, Interface, Ipv4Cidr};

/// Run tunstack on a TUN interface: `ping 10.200.0.2` from the host once it starts.
#[derive(Debug, Parser)]
#[command(name = "tunstackd", version, about)]
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

    /// Seed for the stack's randomness (IP IDs, and later ISNs and ports). Default: from the OS.
    #[arg(long)]
    seed: Option<u64>,
}

fn os_seed() -> io::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(u64::from_ne_bytes(b))
}

fn run(args: Args) -> io::Result<()> {
    if args.host_address.addr() == args.address.addr() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--address and --host-address must differ",
        ));
    }
    if !args.address.contains(args.host_address.addr()) {
        log::warn!(
            "host side {} is outside the stack's subnet {}: the stack reaches it only through its default route",
            args.host_address,
            args.address
        );
    }
    let mtu = args.mtu as usize;
    let device = TunDevice::create(&args.interface)?;
    device.set_mtu(mtu)?;
    if !args.no_configure_host {
        device.set_host_address(args.host_address)?;
    }
    device.set_up()?;

    let mut config = Config::new(args.address);
    config.gateway = Some(args.host_address.addr());
    config.mtu = mtu;
    config.seed = match args.seed {
        Some(s) => s,
        None => os_seed()?,
    };
    config.answer_broadcast_echo = !args.ignore_broadcast_ping;
    let name = device.name().to_owned();
    let mut driver = Driver::new(Interface::new(config), device)?;

    // Signals only set a flag and poke the driver's wake pipe; the loop acts on them.
    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone())?;
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGUSR1,
    ] {
        signal_hook::low_level::pipe::register(sig, driver.waker().to_fd()?)?;
    }

    let host = if args.no_configure_host {
        "host side left unconfigured".to_owned()
    } else {
        format!("host side {}", args.host_address)
    };
    println!(
        "tunstackd: owns {name} (stack {}, {host}, MTU {mtu}); try: ping {}",
        args.address,
        args.address.addr()
    );
    io::stdout().flush()?;
    log::info!("running on {name}; SIGUSR1 prints counters, SIGINT/SIGTERM stop");

    driver.run(|iface| {
        if dump.swap(false, Ordering::SeqCst) {
            print_stats(iface);
        }
        if stop.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    print_stats(driver.interface());
    log::info!("stopped; {name} goes away with us");
    Ok(())
}

fn print_stats(iface: &Interface) {
    println!("stats: {}", iface.stats());
    let _ = io::stdout().flush();
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunstackd: {e}");
            if e.kind() == io::ErrorKind::PermissionDenied {
                eprintln!("tunstackd: creating a TUN interface needs root (try sudo) or CAP_NET_ADMIN");
            }
            ExitCode::FAILURE
        }
    }
}

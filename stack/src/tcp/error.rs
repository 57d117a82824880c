//! Errors of TCP socket calls, and why a connection ended.

#![forbid(unsafe_code)]

use core::fmt;

/// Why a connection ended abnormally, as the application will hear it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// RST in answer to our SYN (ECONNREFUSED).
    Refused,
    /// RST on an open connection (ECONNRESET).
    Reset,
    /// Retransmissions or keepalives went unanswered (ETIMEDOUT).
    TimedOut,
    /// ICMP network unreachable (ENETUNREACH): at once while connecting,
    /// in place of `TimedOut` once connected (RFC 1122 §4.2.3.9, as Linux).
    NetUnreachable,
    /// ICMP host unreachable or time exceeded (EHOSTUNREACH), likewise.
    HostUnreachable,
    /// ICMP protocol unreachable: the peer runs no TCP (ENOPROTOOPT).
    ProtocolUnavailable,
}

impl ConnError {
    /// What an ICMP error about one of our segments means for the
    /// connection (Linux's `icmp_err_convert` for TCP), and whether it is a
    /// hard error that ends a half-open connection at once. `None`: not an
    /// error TCP acts on (fragmentation needed, source quench, redirect).
    pub fn from_icmp(kind: u8, code: u8) -> Option<(ConnError, bool)> {
        use crate::wire::icmp::{kind as k, unreachable as u};
        match (kind, code) {
            // Hard or soft as Linux's icmp_err_convert.
            (k::DEST_UNREACHABLE, u::NET | 11) => Some((ConnError::NetUnreachable, false)),
            (k::DEST_UNREACHABLE, 6 | 9) => Some((ConnError::NetUnreachable, true)),
            (k::DEST_UNREACHABLE, u::HOST | 5 | 12) => Some((ConnError::HostUnreachable, false)),
            (k::DEST_UNREACHABLE, 7 | 8 | 10 | 13..=15) => Some((ConnError::HostUnreachable, true)),
            (k::DEST_UNREACHABLE, u::PROTOCOL) => Some((ConnError::ProtocolUnavailable, true)),
            (k::DEST_UNREACHABLE, u::PORT) => Some((ConnError::Refused, true)),
            (k::TIME_EXCEEDED, _) => Some((ConnError::HostUnreachable, false)),
            _ => None,
        }
    }
}

/// Why `listen` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenError {
    /// The port is taken.
    AddrInUse,
    /// Not one of our addresses.
    AddrNotAvailable,
}

/// Why `connect` failed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Port 0, address 0.0.0.0, or a broadcast address.
    InvalidAddress,
    /// No route to the peer.
    NetUnreachable,
    /// The 4-tuple asked for is in use.
    AddrInUse,
    /// No ephemeral port is free towards this peer (Linux's EADDRNOTAVAIL),
    /// or the local address is not ours.
    AddrNotAvailable,
    /// The stack holds as many connections as `TcpConfig::max_connections` allows (ENOBUFS).
    TooManyConnections,
}

/// Why a send or receive did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// Nothing can be done now; wait for an event.
    WouldBlock,
    /// Not connected (yet, or any more).
    NotConnected,
    /// Writing was shut down, or the connection is closing (EPIPE).
    BrokenPipe,
    /// The connection failed.
    Failed(ConnError),
}

error_messages!(ConnError {
    Refused => "connection refused",
    Reset => "connection reset by peer",
    TimedOut => "connection timed out",
    NetUnreachable => "network is unreachable (ICMP)",
    HostUnreachable => "no route to host (ICMP)",
    ProtocolUnavailable => "protocol not available (ICMP protocol unreachable)",
});

error_messages!(ListenError {
    AddrInUse => "address already in use",
    AddrNotAvailable => "address not available on this interface",
});

error_messages!(ConnectError {
    InvalidAddress => "invalid peer address (port 0, 0.0.0.0, broadcast or multicast)",
    NetUnreachable => "network is unreachable",
    AddrInUse => "the connection exists",
    AddrNotAvailable => "no free local port towards this peer, or local address not ours",
    TooManyConnections => "the stack's connection limit is reached",
});

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::WouldBlock => f.write_str("operation would block"),
            IoError::NotConnected => f.write_str("not connected"),
            IoError::BrokenPipe => f.write_str("broken pipe: writing was shut down"),
            IoError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for IoError {}

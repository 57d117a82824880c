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
    /// No free local port, or the 4-tuple is in use.
    AddrInUse,
    /// The local address is not ours.
    AddrNotAvailable,
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
});

error_messages!(ListenError {
    AddrInUse => "address already in use",
    AddrNotAvailable => "address not available on this interface",
});

error_messages!(ConnectError {
    InvalidAddress => "invalid peer address (port 0, 0.0.0.0, broadcast or multicast)",
    NetUnreachable => "network is unreachable",
    AddrInUse => "no free local port, or the connection exists",
    AddrNotAvailable => "local address not available on this interface",
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

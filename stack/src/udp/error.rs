//! Errors of UDP socket calls, and the errors ICMP reports to UDP sockets.

#![forbid(unsafe_code)]

use crate::wire::icmp::{kind, unreachable};
use core::fmt;

/// An error reported to a socket because of an ICMP message (Linux's `icmp_err_convert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketError {
    /// Port unreachable: nobody listens there (ECONNREFUSED).
    ConnectionRefused,
    /// Protocol unreachable (ENOPROTOOPT).
    ProtocolUnavailable,
    /// Host unreachable, or TTL exceeded on the way (EHOSTUNREACH).
    HostUnreachable,
    /// Network unreachable (ENETUNREACH).
    NetUnreachable,
    /// Fragmentation needed but DF set (EMSGSIZE).
    MessageTooBig,
}

impl SocketError {
    /// Maps an ICMP error to a socket error and whether it is "hard"
    /// (reported on a connected socket). Linux reports only hard errors
    /// without `IP_RECVERR`.
    pub fn from_icmp(kind_: u8, code: u8) -> Option<(SocketError, bool)> {
        match (kind_, code) {
            (kind::DEST_UNREACHABLE, unreachable::NET) => Some((SocketError::NetUnreachable, false)),
            (kind::DEST_UNREACHABLE, unreachable::HOST) => Some((SocketError::HostUnreachable, false)),
            (kind::DEST_UNREACHABLE, unreachable::PROTOCOL) => Some((SocketError::ProtocolUnavailable, true)),
            (kind::DEST_UNREACHABLE, unreachable::PORT) => Some((SocketError::ConnectionRefused, true)),
            (kind::DEST_UNREACHABLE, unreachable::FRAG_NEEDED) => Some((SocketError::MessageTooBig, false)),
            (kind::DEST_UNREACHABLE, 6 | 9 | 11) => Some((SocketError::NetUnreachable, true)),
            (kind::DEST_UNREACHABLE, 5 | 7 | 8 | 10 | 12 | 13 | 14 | 15) => Some((SocketError::HostUnreachable, true)),
            (kind::TIME_EXCEEDED, _) => Some((SocketError::HostUnreachable, false)),
            _ => None,
        }
    }
}

/// Why a bind failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// Another socket holds the address and port.
    AddrInUse,
    /// The address is not one of ours (nor 0.0.0.0 or a broadcast address).
    AddrNotAvailable,
}

/// Why a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Port 0 or address 0.0.0.0.
    InvalidAddress,
    /// A broadcast peer without the broadcast flag.
    PermissionDenied,
    /// No route to the peer.
    NetUnreachable,
}

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// `send` on a socket that is not connected.
    NotConnected,
    /// Port 0 or address 0.0.0.0.
    InvalidAddress,
    /// A broadcast destination without the broadcast flag.
    PermissionDenied,
    /// More than 65507 bytes.
    MessageTooBig,
    /// No route to the destination.
    NetUnreachable,
    /// The transmit queue is full: try again once it drains.
    QueueFull,
    /// An earlier ICMP error, reported now (and cleared).
    Socket(SocketError),
}

/// Why a receive returned no datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing queued.
    WouldBlock,
    /// An earlier ICMP error, reported now (and cleared).
    Socket(SocketError),
}

error_messages!(SocketError {
    ConnectionRefused => "connection refused (ICMP port unreachable)",
    ProtocolUnavailable => "protocol not available (ICMP protocol unreachable)",
    HostUnreachable => "no route to host (ICMP host unreachable or TTL exceeded)",
    NetUnreachable => "network is unreachable (ICMP)",
    MessageTooBig => "message too long (ICMP fragmentation needed)",
});

error_messages!(BindError {
    AddrInUse => "address already in use",
    AddrNotAvailable => "address not available on this interface",
});

error_messages!(ConnectError {
    InvalidAddress => "invalid peer address (port 0 or 0.0.0.0)",
    PermissionDenied => "broadcast peer without the broadcast flag",
    NetUnreachable => "network is unreachable",
});

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConnected => f.write_str("socket is not connected"),
            SendError::InvalidAddress => f.write_str("invalid destination (port 0 or 0.0.0.0)"),
            SendError::PermissionDenied => f.write_str("broadcast destination without the broadcast flag"),
            SendError::MessageTooBig => f.write_str("datagram longer than 65507 bytes"),
            SendError::NetUnreachable => f.write_str("network is unreachable"),
            SendError::QueueFull => f.write_str("transmit queue full"),
            SendError::Socket(e) => write!(f, "earlier error: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::WouldBlock => f.write_str("no datagram waiting"),
            RecvError::Socket(e) => write!(f, "earlier error: {e}"),
        }
    }
}

impl std::error::Error for RecvError {}

//! What every protocol layer shares about sockets: the generation-checked
//! slab they live in (a stale handle can never reach a socket that reused
//! its slot), the typed handles the API hands out, the events that wake
//! waiting threads, and the ephemeral port range.

#![forbid(unsafe_code)]

use crate::rand::Rng;
use core::fmt;

/// A reference to a socket in a [`Slab`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    index: u32,
    generation: u32,
}

impl Handle {
    /// The slot index (stable while the socket lives; handy as a display id).
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// Refers to one UDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle(pub(crate) Handle);

impl UdpHandle {
    /// A small number identifying the socket while it lives.
    pub fn id(&self) -> u32 {
        self.0.index()
    }
}

/// Refers to one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle(pub(crate) Handle);

/// Refers to one listening TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerHandle(pub(crate) Handle);

/// Refers to one ICMP echo socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpHandle(pub(crate) Handle);

/// A socket whose state changed: it may now be readable (or have an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketEvent {
    /// A UDP socket.
    Udp(UdpHandle),
    /// A TCP connection: data, space, a state change or an error.
    Tcp(TcpHandle),
    /// A TCP listener with a connection to accept.
    Listener(ListenerHandle),
    /// An ICMP echo socket with a reply or error.
    Icmp(IcmpHandle),
}

/// First port of the ephemeral range (IANA, RFC 6335), shared by UDP and TCP.
pub const EPHEMERAL_FIRST: u16 = 49152;
/// Last port of the ephemeral range.
pub const EPHEMERAL_LAST: u16 = 65535;

/// A free port from the ephemeral range: a random start (RFC 6056's
/// "random port randomization"), then the next port `in_use` says is free.
pub fn ephemeral_port(rng: &mut Rng, in_use: impl Fn(u16) -> bool) -> Option<u16> {
    let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
    let start = rng.below(u64::from(span)) as u32;
    (0..span)
        .map(|i| EPHEMERAL_FIRST + ((start + i) % span) as u16)
        .find(|p| !in_use(*p))
}

#[derive(Debug)]
enum Entry<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32 },
}

/// Values addressed by [`Handle`]s; freed slots are reused.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its handle.
    pub fn insert(&mut self, value: T) -> Handle {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            let generation = match entry {
                Entry::Vacant { generation } => generation.wrapping_add(1),
                Entry::Occupied { .. } => unreachable!("free list holds vacant slots"),
            };
            *entry = Entry::Occupied { generation, value };
            return Handle { index, generation };
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 sockets");
        self.entries.push(Entry::Occupied { generation: 0, value });
        Handle { index, generation: 0 }
    }

    /// Removes and returns the value behind `h`, if it is still there.
    pub fn remove(&mut self, h: Handle) -> Option<T> {
        let entry = self.entries.get_mut(h.index as usize)?;
        match entry {
            Entry::Occupied { generation, .. } if *generation == h.generation => {
                let old = std::mem::replace(
                    entry,
                    Entry::Vacant {
                        generation: h.generation,
                    },
                );
                self.free.push(h.index);
                self.len -= 1;
                match old {
                    Entry::Occupied { value, .. } => Some(value),
                    Entry::Vacant { .. } => unreachable!(),
                }
            }
            _ => None,
        }
    }

    /// The value behind `h`.
    pub fn get(&self, h: Handle) -> Option<&T> {
        match self.entries.get(h.index as usize)? {
            Entry::Occupied { generation, value } if *generation == h.generation => Some(value),
            _ => None,
        }
    }

    /// The value behind `h`, mutably.
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        match self.entries.get_mut(h.index as usize)? {
            Entry::Occupied { generation, value } if *generation == h.generation => Some(value),
            _ => None,
        }
    }

    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every stored value with its handle, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| match e {
            Entry::Occupied { generation, value } => Some((
                Handle {
                    index: i as u32,
                    generation: *generation,
                },
                value,
            )),
            Entry::Vacant { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_miss_reused_slots() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c");
        assert_eq!(c.index(), a.index(), "slot reused");
        assert_eq!(s.get(a), None, "old handle is stale");
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 2);
        let all: Vec<&str> = s.iter().map(|(_, v)| *v).collect();
        assert_eq!(all, ["c", "b"]);
    }
}

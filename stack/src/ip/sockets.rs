//! How a protocol layer lends its socket calls to the API: the layer,
//! borrowed together with the IP context its calls send through.

#![forbid(unsafe_code)]

use super::context::Context;

/// One protocol layer's sockets together with the IP context they send
/// through, for the duration of one call: what [`Interface::udp`],
/// [`Interface::tcp`] and [`Interface::ping`] return. Each layer adds its
/// socket calls to `Sockets<'_, ItsLayer>`; its read-only queries are on
/// the layer itself, reachable here through `Deref`.
///
/// [`Interface::udp`]: crate::iface::Interface::udp
/// [`Interface::tcp`]: crate::iface::Interface::tcp
/// [`Interface::ping`]: crate::iface::Interface::ping
#[derive(Debug)]
pub struct Sockets<'a, L> {
    pub(crate) layer: &'a mut L,
    pub(crate) cx: Context<'a>,
}

impl<'a, L> Sockets<'a, L> {
    pub(crate) fn new(layer: &'a mut L, cx: Context<'a>) -> Sockets<'a, L> {
        Sockets { layer, cx }
    }
}

impl<L> core::ops::Deref for Sockets<'_, L> {
    type Target = L;
    fn deref(&self) -> &L {
        self.layer
    }
}

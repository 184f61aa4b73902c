//! Netlink framing for NETLINK_NETFILTER subsystems (ipset, and ctnetlink for conntrack).
//!
//! Kept apart from any one subsystem: it knows the nfgenmsg header, how to send many requests in
//! one `sendmsg`, how to collect their acks once, and how to drain a multi-part dump. What the
//! payload means is the business of `crate::ipset` (or another subsystem module).

mod nfgen;
mod socket;

pub use nfgen::{NfGenMsg, NFGENMSG_LEN, NFNETLINK_V0};
pub use socket::{request_header, split_messages, NfnlSocket, NlError, Outcome};

use netlink_packet_core::Emitable;

/// Length of an nfnetlink payload: the nfgenmsg header and its attributes.
pub fn nfnl_payload_len<A: Emitable>(attrs: &[A]) -> usize {
    NFGENMSG_LEN + attrs.iter().map(|a| a.buffer_len()).sum::<usize>()
}

/// Writes an nfnetlink payload (nfgenmsg, then each attribute) into `buf`, as long as
/// `nfnl_payload_len` says.
pub fn emit_nfnl_payload<A: Emitable>(nfgen: &NfGenMsg, attrs: &[A], buf: &mut [u8]) {
    nfgen.emit(&mut buf[..NFGENMSG_LEN]);
    let mut off = NFGENMSG_LEN;
    for a in attrs {
        let n = a.buffer_len();
        a.emit(&mut buf[off..off + n]);
        off += n;
    }
}

/// Message type of an nfnetlink message: subsystem in the high byte, command in the low byte.
pub const fn nfnl_msg_type(subsys: u8, cmd: u8) -> u16 {
    ((subsys as u16) << 8) | cmd as u16
}

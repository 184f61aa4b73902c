//! Netlink framing for NETLINK_NETFILTER subsystems (ipset, and ctnetlink for conntrack).
//!
//! Kept apart from any one subsystem: it knows the nfgenmsg header, how to send many requests in
//! one `sendmsg`, how to collect their acks once, and how to drain a multi-part dump. What the
//! payload means is the business of `crate::ipset` (or another subsystem module).

mod nfgen;
mod socket;

pub use nfgen::{NfGenMsg, NFGENMSG_LEN, NFNETLINK_V0};
pub use socket::{request_header, split_messages, NfnlSocket, NlError, Outcome};

/// Message type of an nfnetlink message: subsystem in the high byte, command in the low byte.
pub const fn nfnl_msg_type(subsys: u8, cmd: u8) -> u16 {
    ((subsys as u16) << 8) | cmd as u16
}

//! The kernel's packet logging over netlink (nfnetlink_log, NFNL_SUBSYS_ULOG): what a rule with
//! nftables' `log group N` or iptables' `NFLOG --nflog-group N` sends, read by a socket bound to
//! group N — no ulogd, no process. Security-group logging reads its events here.
//!
//! - `constants`: the numbers of include/uapi/linux/netfilter/nfnetlink_log.h;
//! - `message`: the typed payload (`UlogMessage`: a packet's attributes, or a configuration
//!   command), its fixed-layout parts read and written through buffer views; `wire_tests`;
//! - `reader`: binding a group and reading its packets (`NflogReader`), through the kernel seam
//!   `UlogKernel` (the socket, or in tests a model), and what a packet is to the agent (`LogPacket`).

pub mod constants;
pub mod message;
pub mod reader;

pub use message::{UlogAttr, UlogMessage};
pub use reader::{LogPacket, NflogListener, NflogReader, UlogKernel};

#[cfg(test)]
mod wire_tests;

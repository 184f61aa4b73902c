//! The kernel's ipset protocol (NFNL_SUBSYS_IPSET) over our netlink framing: typed attributes and
//! messages, member parsing, the pure diff, and the client that keeps a mirror of managed sets.

pub mod attr;
pub mod client;
pub mod constants;
pub mod diff;
pub mod error;
pub mod member;
pub mod message;

pub use client::{BatchResult, IpsetClient, ReconcileResult, SetHeader, SyncResult, SyncStrategy};
pub use error::{ErrorCode, IpsetError};
pub use member::{Family, Member, SetSpec, SetType};

#[cfg(test)]
mod wire_tests;

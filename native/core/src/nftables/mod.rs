//! The kernel's nf_tables protocol (NFNL_SUBSYS_NFTABLES) over our netlink framing: the second
//! firewall backend's kernel side, with no `nft` process and no libnftnl.
//!
//! - `constants`, `nla`, `expr`, `attr`, `message`: typed messages and expressions (emit + parse,
//!   `Other` fallbacks), tested against bytes written from the kernel's uapi headers (`wire_tests`);
//! - `spec`: the operations and rule statements callers send (JSON), and their expressions;
//! - `cidr`: addresses as interval-set elements, and the union of a set's members;
//! - `mirror`: what this client committed; `client`: transactions (one batch each, all or nothing),
//!   read-back and repair, and what the kernel supports; `watch`: repair on the kernel's
//!   notifications of foreign changes.

pub mod attr;
pub mod cidr;
pub mod client;
pub mod constants;
pub mod error;
pub mod expr;
pub mod message;
pub mod mirror;
pub mod nla;
pub mod spec;
pub mod watch;

pub use client::{probe, NftClient, ReconcileReport, Scope, Support, TableDesc, TransactResult};
pub use spec::{Family, Op};
pub use watch::{Watch, WatchEvent};

#[cfg(test)]
mod wire_tests;

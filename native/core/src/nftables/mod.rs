//! The kernel's nf_tables protocol (NFNL_SUBSYS_NFTABLES) over our netlink framing: the second
//! firewall backend's kernel side, with no `nft` process and no libnftnl.
//!
//! - `constants`, `nla`, `expr`, `attr`, `message`: typed messages and expressions (emit + parse,
//!   `Other` fallbacks), tested against bytes written from the kernel's uapi headers (`wire_tests`);
//! - `spec`: the operations and rule statements callers send (JSON), and their expressions;
//! - `cidr`: addresses as interval-set elements, and the union of a set's members;
//! - `request`: the messages the client sends; `kernel`: the seam between the client and the socket
//!   (`model`, in tests, a kernel with failures injected);
//! - `mirror`: what this client committed; `client`: transactions (one batch each, all or nothing);
//!   `build`: what each operation sends and changes in the mirror; `readback`: our tables as the
//!   kernel has them; `reconcile`: drift repair against the mirror; `probe`: what the kernel
//!   supports; `watch`: repair on the kernel's notifications of foreign changes; `trace`: the events
//!   of packets marked for tracing.

pub mod attr;
mod build;
pub mod cidr;
pub mod client;
pub mod constants;
pub mod error;
pub mod expr;
pub mod kernel;
pub mod message;
pub mod mirror;
pub mod nla;
pub mod probe;
pub mod readback;
pub mod reconcile;
pub mod request;
pub mod spec;
pub mod trace;
mod ts_types;
pub mod watch;

pub use client::{NftClient, TransactResult};
pub use kernel::NftKernel;
pub use probe::{probe, Support};
pub use readback::{RuleStat, TableDesc};
pub use reconcile::{ReconcileReport, Scope};
pub use spec::{Family, Op};
pub use trace::{TraceEvent, TraceListener};
pub use watch::{Watch, WatchEvent};

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod encode_timing;
#[cfg(test)]
pub mod model;
#[cfg(test)]
mod wire_tests;

//! sg-agent's kernel-facing core, in plain Rust (no N-API): netlink framing for NETLINK_NETFILTER
//! subsystems, the ipset protocol with its client and sync logic, the nf_tables protocol with its
//! transactions and drift repair, and opening sockets in another network namespace. The addon in
//! `native/` only binds this to JS.

pub mod ipset;
pub mod nftables;
pub mod netlink;
pub mod conntrack;
pub mod netns;
pub mod tool;
pub mod error;

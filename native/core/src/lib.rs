//! sg-agent's kernel-facing core, in plain Rust (no N-API): netlink framing for NETLINK_NETFILTER
//! subsystems, the ipset protocol with its client and sync logic, and opening sockets in another
//! network namespace. The addon in `native/` only binds this to JS.

pub mod ipset;
pub mod netlink;
pub mod conntrack;
pub mod netns;
pub mod tool;
pub mod error;

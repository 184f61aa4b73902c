//! The kernel's ipset protocol (NFNL_SUBSYS_IPSET) over our netlink framing.
//!
//! - `attr`, `message`: typed attributes and messages (emit + parse, `Other` fallback);
//! - `member`, `name`, `packed`: members, specs and set names, and the packed member list from JS;
//! - `wire`: each command as the kernel takes it (no state beyond the socket);
//! - `kernel`: the seam between the two halves, so the policy can be tested against a model;
//! - `client`: the mirror and the commands; `sync`: the sync policy (all or nothing);
//! - `diff`: the pure diff and the in-place-versus-swap decision;
//! - `lastlist`: the list of the last full sync, cut into chunks, so the next one costs O(change).

pub mod attr;
pub mod client;
pub mod constants;
pub mod diff;
pub mod error;
pub mod kernel;
pub mod lastlist;
pub mod member;
pub mod message;
pub mod name;
pub mod packed;
pub mod sync;
pub mod wire;

pub use client::{BatchResult, FailedMember, IpsetClient, ReconcileResult, SyncResult, SyncStrategy};
pub use error::{ErrorCode, IpsetError};
pub use kernel::{Adt, IpsetKernel, KernelSet, SetHeader, SetIdentity, SetKind};
pub use member::{Family, Member, SetSpec, SetType};
pub use name::temp_set_name;
pub use packed::decode_members;
pub use wire::{probe_protocol, IpsetWire};

#[cfg(test)]
mod model;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod wire_tests;

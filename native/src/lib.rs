//! sg-agent native addon: binds the plain-Rust core (`sg-agent-core`) to JS. The `napi_*` modules
//! only convert types and spawn work off the JS thread.

mod js_error;
mod napi_conntrack;
mod napi_ipset;
mod napi_listen;
mod napi_nftables;
mod napi_tool;
mod task;

use napi_derive::napi;

/// Version of this native binary (the crate version), reported by `sg-agent --version`.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

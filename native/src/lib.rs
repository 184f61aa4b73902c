//! sg-agent native addon. Plain-Rust core modules first; the `napi_*` modules only convert
//! types and spawn work off the JS thread.

pub mod netns;

use napi_derive::napi;

/// Version of this native binary (the crate version), reported by `sg-agent --version`.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

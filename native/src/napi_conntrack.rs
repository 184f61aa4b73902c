//! JS face of `conntrack::delete_between`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sg_agent_core::conntrack::{delete_between, Between, Cidr};
use sg_agent_core::error::{SysCode, SysError};

use crate::task::{work, Work};

#[napi(object)]
pub struct JsBetween {
    /// Address or CIDR on one side.
    pub a: String,
    /// Address or CIDR on the other side.
    pub b: String,
}

fn parse_pairs(pairs: &[JsBetween]) -> std::result::Result<Vec<Between>, SysError> {
    pairs
        .iter()
        .map(|p| match (Cidr::parse(&p.a), Cidr::parse(&p.b)) {
            (Some(a), Some(b)) if a.addr.is_ipv4() == b.addr.is_ipv4() => Ok(Between { a, b }),
            _ => Err(SysError::new(SysCode::InvalidArgument, format!("not a same-family address pair: {} / {}", p.a, p.b))),
        })
        .collect()
}

/// Deletes conntrack entries whose original direction runs between `a` and `b` of any pair (either
/// way round) in the namespace at `netns`; resolves to how many were deleted. Fails with code
/// INVALID_ARGUMENT, NETNS_UNAVAILABLE or CONNTRACK_FAILED.
#[napi(ts_return_type = "Promise<number>")]
pub fn conntrack_delete_between(netns: Option<String>, pairs: Vec<JsBetween>) -> AsyncTask<Work<u32, u32>> {
    let netns = netns.map(PathBuf::from);
    work(move || {
        let pairs = parse_pairs(&pairs)?;
        delete_between(netns.as_deref(), &pairs).map(|n| n as u32)
    })
}

//! JS face of `conntrack::delete_between` and of the device dump its zones are found with:
//! conversion and tasks on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sg_agent_core::conntrack::{delete_between, links, Between, Cidr};
use sg_agent_core::error::{SysCode, SysError};

use crate::task::{work, Work};

#[napi(object)]
pub struct JsBetween {
    /// Address or CIDR on one side.
    pub a: String,
    /// Address or CIDR on the other side.
    pub b: String,
    /// Only entries tracked in this conntrack zone (0-65535; 0 is the default zone); unset: any zone.
    pub zone: Option<u32>,
}

#[napi(object)]
pub struct JsLink {
    pub index: u32,
    pub name: String,
    /// Its rtnetlink link kind (`bridge`, `veth`…); unset for a physical device.
    pub kind: Option<String>,
    /// The index of the device this one is enslaved to (its bridge), if any.
    pub master: Option<u32>,
}

fn parse_pairs(pairs: &[JsBetween]) -> std::result::Result<Vec<Between>, SysError> {
    pairs
        .iter()
        .map(|p| {
            let zone = match p.zone.map(u16::try_from) {
                None => None,
                Some(Ok(z)) => Some(z),
                Some(Err(_)) => return Err(SysError::new(SysCode::InvalidArgument, format!("not a conntrack zone: {:?}", p.zone))),
            };
            match (Cidr::parse(&p.a), Cidr::parse(&p.b)) {
                (Some(a), Some(b)) if a.addr.is_ipv4() == b.addr.is_ipv4() => Ok(Between { a, b, zone }),
                _ => Err(SysError::new(SysCode::InvalidArgument, format!("not a same-family address pair: {} / {}", p.a, p.b))),
            }
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

/// Every device of the namespace at `netns` with its index and its bridge's index. Fails with code
/// NETNS_UNAVAILABLE or CONNTRACK_FAILED (the dump serves the cuts).
#[napi(ts_return_type = "Promise<JsLink[]>")]
pub fn conntrack_links(netns: Option<String>) -> AsyncTask<Work<Vec<JsLink>, Vec<JsLink>>> {
    let netns = netns.map(PathBuf::from);
    work(move || {
        let found = links(netns.as_deref()).map_err(|e| SysError::from_io(SysCode::ConntrackFailed, &e))?;
        Ok::<_, SysError>(found.into_iter().map(|l| JsLink { index: l.index, name: l.name, kind: l.kind, master: l.master }).collect())
    })
}

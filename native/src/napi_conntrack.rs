//! JS face of `conntrack::delete_between`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;
use sg_agent_core::conntrack::{delete_between, Between, Cidr};

#[napi(object)]
pub struct JsBetween {
    /// Address or CIDR on one side.
    pub a: String,
    /// Address or CIDR on the other side.
    pub b: String,
}

pub struct ConntrackTask {
    netns: Option<PathBuf>,
    pairs: Vec<Between>,
}

impl Task for ConntrackTask {
    type Output = u32;
    type JsValue = u32;

    fn compute(&mut self) -> Result<u32> {
        delete_between(self.netns.as_deref(), &self.pairs)
            .map(|n| n as u32)
            .map_err(|e| Error::new(Status::GenericFailure, format!("conntrack: {e}")))
    }

    fn resolve(&mut self, _env: Env, n: u32) -> Result<u32> {
        Ok(n)
    }
}

/// Deletes conntrack entries whose original direction runs between `a` and `b` of any pair (either
/// way round) in the namespace at `netns`; resolves to how many were deleted.
#[napi(ts_return_type = "Promise<number>")]
pub fn conntrack_delete_between(netns: Option<String>, pairs: Vec<JsBetween>) -> Result<AsyncTask<ConntrackTask>> {
    let pairs = pairs
        .iter()
        .map(|p| match (Cidr::parse(&p.a), Cidr::parse(&p.b)) {
            (Some(a), Some(b)) if a.addr.is_ipv4() == b.addr.is_ipv4() => Ok(Between { a, b }),
            _ => Err(Error::new(Status::InvalidArg, format!("conntrack: not a same-family address pair: {} / {}", p.a, p.b))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AsyncTask::new(ConntrackTask { netns: netns.map(PathBuf::from), pairs }))
}

//! JS face of `conntrack::delete_between`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;
use sg_agent_core::conntrack::{delete_between, Between, Cidr};
use sg_agent_core::error::{SysCode, SysError};

use crate::js_error::Failure;

#[napi(object)]
pub struct JsBetween {
    /// Address or CIDR on one side.
    pub a: String,
    /// Address or CIDR on the other side.
    pub b: String,
}

pub struct ConntrackTask {
    netns: Option<PathBuf>,
    pairs: Vec<JsBetween>,
    failure: Failure,
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

impl Task for ConntrackTask {
    type Output = u32;
    type JsValue = u32;

    fn compute(&mut self) -> Result<u32> {
        let run = || {
            let pairs = parse_pairs(&self.pairs)?;
            delete_between(self.netns.as_deref(), &pairs)
        };
        run().map(|n| n as u32).map_err(|e| self.failure.keep(e))
    }

    fn resolve(&mut self, _env: Env, n: u32) -> Result<u32> {
        Ok(n)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<u32> {
        self.failure.reject(&env, err)
    }
}

/// Deletes conntrack entries whose original direction runs between `a` and `b` of any pair (either
/// way round) in the namespace at `netns`; resolves to how many were deleted. Fails with code
/// INVALID_ARGUMENT, NETNS_UNAVAILABLE or CONNTRACK_FAILED.
#[napi(ts_return_type = "Promise<number>")]
pub fn conntrack_delete_between(netns: Option<String>, pairs: Vec<JsBetween>) -> AsyncTask<ConntrackTask> {
    AsyncTask::new(ConntrackTask { netns: netns.map(PathBuf::from), pairs, failure: Failure::default() })
}

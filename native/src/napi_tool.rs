//! JS face of `tool::run_tool`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sg_agent_core::error::{SysCode, SysError};
use sg_agent_core::tool::{run_tool, Tool};

use crate::task::{work, Work};

#[napi(object)]
pub struct JsToolOutput {
    /// Exit code; null when the tool was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one of the tools `tool::Tool` lists (the iptables and ebtables restore/save pairs) in the
/// namespace at `netns` with `input` on stdin. A tool that ran resolves with its exit code; one that
/// could not be run fails with code INVALID_ARGUMENT (not one of them), NETNS_UNAVAILABLE or
/// TOOL_SPAWN_FAILED.
#[napi(ts_return_type = "Promise<JsToolOutput>")]
pub fn run_tool_in_netns(
    netns: Option<String>,
    tool: String,
    args: Vec<String>,
    input: Buffer,
) -> AsyncTask<Work<JsToolOutput, JsToolOutput>> {
    let netns = netns.map(PathBuf::from);
    work(move || {
        let tool =
            Tool::parse(&tool).ok_or_else(|| SysError::new(SysCode::InvalidArgument, format!("not a tool this addon runs: {tool:?}")))?;
        let out = run_tool(netns.as_deref(), tool, args, input.to_vec())?;
        Ok::<_, SysError>(JsToolOutput {
            code: out.code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    })
}

//! JS face of `tool::run_tool`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;
use sg_agent_core::error::{SysCode, SysError};
use sg_agent_core::tool::{run_tool, Tool};

use crate::js_error::Failure;

#[napi(object)]
pub struct JsToolOutput {
    /// Exit code; null when the tool was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub struct ToolTask {
    netns: Option<PathBuf>,
    tool: String,
    args: Vec<String>,
    input: Buffer,
    failure: Failure,
}

impl Task for ToolTask {
    type Output = JsToolOutput;
    type JsValue = JsToolOutput;

    fn compute(&mut self) -> Result<JsToolOutput> {
        let tool = Tool::parse(&self.tool)
            .ok_or_else(|| SysError::new(SysCode::InvalidArgument, format!("not a tool this addon runs: {:?}", self.tool)));
        let out = tool
            .and_then(|tool| run_tool(self.netns.as_deref(), tool, std::mem::take(&mut self.args), self.input.to_vec()))
            .map_err(|e| self.failure.keep(e))?;
        Ok(JsToolOutput {
            code: out.code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn resolve(&mut self, _env: Env, out: JsToolOutput) -> Result<JsToolOutput> {
        Ok(out)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<JsToolOutput> {
        self.failure.reject(&env, err)
    }
}

/// Runs one of the tools `tool::Tool` lists (the iptables and ebtables restore/save pairs) in the
/// namespace at `netns` with `input` on stdin. A tool that ran resolves with its exit code; one that
/// could not be run fails with code INVALID_ARGUMENT (not one of them), NETNS_UNAVAILABLE or
/// TOOL_SPAWN_FAILED.
#[napi(ts_return_type = "Promise<JsToolOutput>")]
pub fn run_tool_in_netns(netns: Option<String>, tool: String, args: Vec<String>, input: Buffer) -> AsyncTask<ToolTask> {
    AsyncTask::new(ToolTask { netns: netns.map(PathBuf::from), tool, args, input, failure: Failure::default() })
}

//! JS face of `tool::run_tool`: conversion and a task on the libuv pool.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;
use sg_agent_core::tool::{run_tool, Tool};

#[napi(object)]
pub struct JsToolOutput {
    /// Exit code; null when the tool was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub struct ToolTask {
    netns: Option<PathBuf>,
    tool: Tool,
    args: Vec<String>,
    input: Vec<u8>,
}

impl Task for ToolTask {
    type Output = JsToolOutput;
    type JsValue = JsToolOutput;

    fn compute(&mut self) -> Result<JsToolOutput> {
        let out = run_tool(self.netns.as_deref(), self.tool, std::mem::take(&mut self.args), std::mem::take(&mut self.input))
            .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
        Ok(JsToolOutput {
            code: out.code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn resolve(&mut self, _env: Env, out: JsToolOutput) -> Result<JsToolOutput> {
        Ok(out)
    }
}

/// Runs one of the iptables tools (`iptables-restore`, `ip6tables-restore`, `iptables-save`,
/// `ip6tables-save`) in the namespace at `netns` with `input` on stdin.
#[napi(ts_return_type = "Promise<JsToolOutput>")]
pub fn run_tool_in_netns(netns: Option<String>, tool: String, args: Vec<String>, input: Buffer) -> Result<AsyncTask<ToolTask>> {
    let tool = Tool::parse(&tool).ok_or_else(|| Error::new(Status::InvalidArg, format!("not a tool this addon runs: {tool:?}")))?;
    Ok(AsyncTask::new(ToolTask { netns: netns.map(PathBuf::from), tool, args, input: input.to_vec() }))
}

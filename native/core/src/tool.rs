//! Running the iptables tools (`iptables-restore`, `iptables-save`, their IPv6 twins, and the
//! ebtables pair for ARP protection on bridges) inside a network namespace, with a script on stdin.
//!
//! Rules are still written by the tools — iptables' kernel interface is theirs to speak — but the
//! process is started here rather than from Node: `std::process::Command` uses `posix_spawn`
//! (a vfork-style clone), which does not copy the parent's page tables as a fork of a large Node
//! process does, and the child is spawned from a helper thread that joined the namespace, so no
//! `nsenter` runs in between.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{SysCode, SysError};
use crate::netns::in_netns;

/// The tools that may be run: nothing else is reachable through this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    IptablesRestore,
    Ip6tablesRestore,
    IptablesSave,
    Ip6tablesSave,
    EbtablesRestore,
    EbtablesSave,
}

impl Tool {
    pub fn parse(name: &str) -> Option<Tool> {
        match name {
            "iptables-restore" => Some(Tool::IptablesRestore),
            "ip6tables-restore" => Some(Tool::Ip6tablesRestore),
            "iptables-save" => Some(Tool::IptablesSave),
            "ip6tables-save" => Some(Tool::Ip6tablesSave),
            "ebtables-restore" => Some(Tool::EbtablesRestore),
            "ebtables-save" => Some(Tool::EbtablesSave),
            _ => None,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Tool::IptablesRestore => "iptables-restore",
            Tool::Ip6tablesRestore => "ip6tables-restore",
            Tool::IptablesSave => "iptables-save",
            Tool::Ip6tablesSave => "ip6tables-save",
            Tool::EbtablesRestore => "ebtables-restore",
            Tool::EbtablesSave => "ebtables-save",
        }
    }
}

#[derive(Debug)]
pub struct ToolOutput {
    /// Exit code; `None` when the tool was killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `tool args…` in the namespace at `netns` (or the current one), feeding `input` on stdin.
/// A tool that ran reports its exit code in `ToolOutput`; an error means it could not be started
/// (`TOOL_SPAWN_FAILED`) or the namespace could not be entered (`NETNS_UNAVAILABLE`).
pub fn run_tool(netns: Option<&Path>, tool: Tool, args: Vec<String>, input: Vec<u8>) -> Result<ToolOutput, SysError> {
    spawn_in(netns, tool, args, input).map_err(|e| SysError::from_io(SysCode::ToolSpawnFailed, &e))
}

fn spawn_in(netns: Option<&Path>, tool: Tool, args: Vec<String>, input: Vec<u8>) -> io::Result<ToolOutput> {
    in_netns(netns, move || {
        let mut child = Command::new(tool.program())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", tool.program())))?;
        // Written from its own thread: a tool that prints much before reading all its input (or
        // never reads it) must not block us on a full pipe.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let writer = std::thread::spawn(move || {
            // A tool that exits without reading stdin (iptables-save) closes the pipe: not an error.
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output()?;
        let _ = writer.join();
        Ok(ToolOutput { code: out.status.code(), stdout: out.stdout, stderr: out.stderr })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_tools_are_known() {
        for name in ["iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "ebtables-restore", "ebtables-save"] {
            assert_eq!(Tool::parse(name).map(Tool::program), Some(name));
        }
        for name in ["sh", "iptables", "ebtables", "/usr/sbin/iptables-restore", "iptables-restore ", ""] {
            assert_eq!(Tool::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        // An empty PATH for this process is not ours to set in a test; a netns path that does not
        // exist fails before anything is spawned, with the path in the message.
        let e = run_tool(Some(Path::new("/nonexistent/netns")), Tool::IptablesSave, vec![], vec![]).unwrap_err();
        assert_eq!(e.code, SysCode::NetnsUnavailable);
        assert_eq!(e.errno, Some(libc::ENOENT));
        assert!(e.message.contains("/nonexistent/netns"), "{e}");
    }
}

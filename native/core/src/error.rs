//! Errors of the parts that are not ipset (conntrack, nf_tables, the iptables tools, namespaces), with a
//! stable code. Their codes are disjoint from ipset's (`ipset::ErrorCode`), so that the JS side can
//! map any addon error by its `code` alone.

use std::fmt;
use std::io;

use crate::netns::{is_netns_error, NetnsUnavailable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysCode {
    /// The caller passed something the addon does not accept (an address pair, a tool name).
    InvalidArgument,
    /// The network namespace could not be opened or joined.
    NetnsUnavailable,
    /// A ctnetlink request failed (dump or delete); `errno` says why.
    ConntrackFailed,
    /// A tool could not be started.
    ToolSpawnFailed,
    /// An nf_tables request could not be made or read (the socket, a dump); a transaction the
    /// kernel refuses is not an error but a result naming the refused operations.
    NftablesFailed,
}

impl SysCode {
    pub fn as_str(self) -> &'static str {
        match self {
            SysCode::InvalidArgument => "INVALID_ARGUMENT",
            SysCode::NetnsUnavailable => "NETNS_UNAVAILABLE",
            SysCode::ConntrackFailed => "CONNTRACK_FAILED",
            SysCode::ToolSpawnFailed => "TOOL_SPAWN_FAILED",
            SysCode::NftablesFailed => "NFTABLES_FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    pub code: SysCode,
    pub errno: Option<i32>,
    pub message: String,
}

impl SysError {
    pub fn new(code: SysCode, message: impl Into<String>) -> Self {
        SysError { code, errno: None, message: message.into() }
    }

    /// An I/O failure of an operation that failed as `code`, unless the namespace was the problem.
    pub fn from_io(code: SysCode, e: &io::Error) -> Self {
        if is_netns_error(e) {
            let errno = e.get_ref().and_then(|i| i.downcast_ref::<NetnsUnavailable>()).and_then(|n| n.source.raw_os_error());
            return SysError { code: SysCode::NetnsUnavailable, errno, message: e.to_string() };
        }
        SysError { code, errno: e.raw_os_error(), message: e.to_string() }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SysError {}

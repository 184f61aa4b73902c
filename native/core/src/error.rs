//! Errors of the parts that are not ipset (conntrack, nf_tables, the iptables tools, namespaces), with a
//! stable code. A code means the same wherever it appears: INVALID_ARGUMENT and NETNS_UNAVAILABLE are
//! codes of the ipset client too (`ipset::ErrorCode`); the JS side picks the error's class by the call
//! that failed and keeps the code (src/addon/errors.ts).

use std::fmt;
use std::io;

use crate::netns::netns_failure;

stable_codes! {
    pub enum SysCode {
        /// The caller passed something the addon does not accept (an address pair, a tool name).
        InvalidArgument => "INVALID_ARGUMENT",
        /// The network namespace could not be opened or joined.
        NetnsUnavailable => "NETNS_UNAVAILABLE",
        /// A ctnetlink request failed (dump or delete); `errno` says why.
        ConntrackFailed => "CONNTRACK_FAILED",
        /// A tool could not be started.
        ToolSpawnFailed => "TOOL_SPAWN_FAILED",
        /// An nf_tables request could not be made or read (the socket, a dump); a transaction the
        /// kernel refuses is not an error but a result naming the refused operations.
        NftablesFailed => "NFTABLES_FAILED",
        /// The packet-log socket (nfnetlink_log) could not be bound to its group or read; `errno`
        /// says why (EBUSY: another socket has the group).
        NflogFailed => "NFLOG_FAILED",
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
        if let Some(n) = netns_failure(e) {
            return SysError { code: SysCode::NetnsUnavailable, errno: n.source.raw_os_error(), message: n.to_string() };
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

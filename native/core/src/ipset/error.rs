//! Errors with a stable code, naming the set and the element they concern.

use std::fmt;

use super::constants::*;
use crate::netns::netns_failure;

stable_codes! {
    pub enum ErrorCode {
        SetNotFound => "SET_NOT_FOUND",
        SetExists => "SET_EXISTS",
        TypeMismatch => "TYPE_MISMATCH",
        SetInUse => "SET_IN_USE",
        PermissionDenied => "PERMISSION_DENIED",
        InvalidMember => "INVALID_MEMBER",
        InvalidName => "INVALID_NAME",
        InvalidSpec => "INVALID_SPEC",
        SetFull => "SET_FULL",
        ElementExists => "ELEMENT_EXISTS",
        ElementMissing => "ELEMENT_MISSING",
        Protocol => "PROTOCOL",
        Kernel => "KERNEL",
        /// The client was closed; its socket is gone.
        ClientClosed => "CLIENT_CLOSED",
        /// The network namespace the client was to open in could not be opened or joined (the
        /// code the other parts give for it too, `SysCode::NetnsUnavailable`).
        NetnsUnavailable => "NETNS_UNAVAILABLE",
    }
}

impl ErrorCode {
    /// Errors about the set as a whole: every other element of the batch would fail the same way.
    /// Not SET_FULL: the kernel looks for the element before it looks at the count, so a full set
    /// still takes an add of what it holds (with `exist`) and says ELEMENT_EXISTS without.
    pub fn is_set_level(self) -> bool {
        !matches!(self, ErrorCode::ElementExists | ErrorCode::ElementMissing | ErrorCode::InvalidMember | ErrorCode::SetFull)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetError {
    pub code: ErrorCode,
    pub set: Option<String>,
    pub member: Option<String>,
    pub errno: Option<i32>,
    pub message: String,
}

impl IpsetError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        IpsetError { code, set: None, member: None, errno: None, message: message.into() }
    }
    pub fn set(mut self, name: &str) -> Self {
        self.set = Some(name.to_string());
        self
    }
    pub fn member(mut self, m: impl Into<String>) -> Self {
        self.member = Some(m.into());
        self
    }

    /// Translates a kernel errno (positive) for `cmd` into our code and words.
    pub fn from_errno(errno: i32, cmd: u8) -> Self {
        use ErrorCode::*;
        let (code, text) = match errno {
            libc::ENOENT => (SetNotFound, "the set does not exist"),
            libc::EEXIST => (SetExists, "a set of that name already exists"),
            libc::EPERM | libc::EACCES => (PermissionDenied, "permission denied (CAP_NET_ADMIN is needed)"),
            IPSET_ERR_PROTOCOL => (Protocol, "the kernel refused the message (protocol error)"),
            IPSET_ERR_FIND_TYPE => (InvalidSpec, "the kernel has no such set type or revision"),
            IPSET_ERR_MAX_SETS => (Kernel, "the kernel's limit on the number of sets is reached"),
            IPSET_ERR_BUSY => (SetInUse, "the set is in use (referenced by a firewall rule or another set)"),
            // The same number means opposite things: swap names a set that must exist, rename a name
            // that must not (net/netfilter/ipset/ip_set_core.c).
            IPSET_ERR_EXIST_SETNAME2 if cmd == IPSET_CMD_SWAP => (SetNotFound, "the second set does not exist"),
            IPSET_ERR_EXIST_SETNAME2 => (SetExists, "a set of the new name already exists"),
            IPSET_ERR_TYPE_MISMATCH => (TypeMismatch, "the sets differ in type or family"),
            IPSET_ERR_EXIST if cmd == IPSET_CMD_ADD => (ElementExists, "the element is already in the set"),
            IPSET_ERR_EXIST if cmd == IPSET_CMD_DEL => (ElementMissing, "the element is not in the set"),
            IPSET_ERR_EXIST if cmd == IPSET_CMD_CREATE => (SetExists, "a set of that name exists with another type or options"),
            IPSET_ERR_EXIST => (ElementMissing, "the element is not in the set"),
            IPSET_ERR_INVALID_CIDR
            | IPSET_ERR_INVALID_NETMASK
            | IPSET_ERR_IPADDR_IPV4
            | IPSET_ERR_IPADDR_IPV6
            | IPSET_ERR_HASH_ELEM
            | IPSET_ERR_HASH_RANGE_UNSUPPORTED
            | IPSET_ERR_HASH_RANGE => (InvalidMember, "the kernel refused the element"),
            IPSET_ERR_INVALID_FAMILY => (InvalidMember, "the element's family does not match the set"),
            IPSET_ERR_REFERENCED => (SetInUse, "the set is referenced"),
            IPSET_ERR_HASH_FULL => (SetFull, "the set is full (maxelem reached)"),
            IPSET_ERR_TIMEOUT | IPSET_ERR_COUNTER | IPSET_ERR_COMMENT => (InvalidSpec, "the set lacks the option this needs"),
            libc::EINVAL => (Protocol, "invalid argument"),
            _ => (Kernel, "the kernel refused the request"),
        };
        IpsetError { code, set: None, member: None, errno: Some(errno), message: format!("{text} (errno {errno})") }
    }
}

impl fmt::Display for IpsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(s) = &self.set {
            write!(f, " [set {s}]")?;
        }
        if let Some(m) = &self.member {
            write!(f, " [element {m}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for IpsetError {}

impl From<std::io::Error> for IpsetError {
    fn from(e: std::io::Error) -> Self {
        if let Some(n) = netns_failure(&e) {
            let errno = n.source.raw_os_error();
            return IpsetError { code: ErrorCode::NetnsUnavailable, set: None, member: None, errno, message: n.to_string() };
        }
        let errno = e.raw_os_error();
        match errno {
            Some(libc::EPERM) | Some(libc::EACCES) => IpsetError::from_errno(errno.unwrap_or(libc::EPERM), 0),
            _ => IpsetError { code: ErrorCode::Kernel, set: None, member: None, errno, message: format!("netlink: {e}") },
        }
    }
}

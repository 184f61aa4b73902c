//! What a refused nf_tables request means: a stable code per errno (the TypeScript side keys on
//! it), the kernel's own words when it gave them (extended acks), and the operation it concerns.

use serde::Serialize;

/// One operation of a transaction the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OpFailure {
    /// Index of the operation in the transaction; None for the batch as a whole.
    pub op: Option<usize>,
    pub code: &'static str,
    pub errno: i32,
    pub message: String,
}

/// A stable code for an errno of an nf_tables request.
pub fn code_of(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "NOT_FOUND",
        libc::EEXIST => "EXISTS",
        libc::EBUSY => "BUSY",
        libc::EPERM | libc::EACCES => "PERMISSION_DENIED",
        libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EPROTO => "UNSUPPORTED",
        libc::ENOMEM | libc::ENOSPC | libc::E2BIG | libc::EMLINK | libc::ENFILE => "NO_ROOM",
        libc::ELOOP => "LOOP",
        libc::ERANGE | libc::EINVAL | libc::ENAMETOOLONG | libc::EOVERFLOW => "INVALID",
        libc::ERESTART | libc::EINTR | libc::EAGAIN => "RETRY",
        _ => "KERNEL",
    }
}

fn words(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "no such table, chain, set or element",
        libc::EEXIST => "it exists with other properties",
        libc::EBUSY => "it is in use (referenced)",
        libc::EPERM | libc::EACCES => "permission denied (CAP_NET_ADMIN is needed)",
        libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EPROTO => "the kernel does not support this",
        libc::ENOMEM | libc::ENOSPC | libc::E2BIG => "out of room",
        libc::ELOOP => "the jumps would make a loop",
        libc::ERANGE | libc::EINVAL | libc::ENAMETOOLONG | libc::EOVERFLOW => "the kernel refused it as invalid",
        _ => "the kernel refused it",
    }
}

/// The kernel's message from an extended ack, if the echoed part carries one (NETLINK_CAP_ACK: the
/// echo is the request's 16-byte header, then the ack's attributes).
pub fn ext_ack_message(echoed: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let tlvs = echoed.get(16..)?;
    for nla in netlink_packet_core::NlasIterator::new(tlvs) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            return super::nla::cstr(nla.value()).ok();
        }
    }
    None
}

pub fn failure(op: Option<usize>, errno: i32, echoed: &[u8], what: &str) -> OpFailure {
    let text = match ext_ack_message(echoed) {
        Some(m) if !m.is_empty() => format!("{what}: {} ({m}, errno {errno})", words(errno)),
        _ => format!("{what}: {} (errno {errno})", words(errno)),
    };
    OpFailure { op, code: code_of(errno), errno, message: text }
}

//! Devices made, renamed and removed, heard as they happen: a socket joined to RTNLGRP_LINK. The
//! iptables backend's conntrack zones need a rule per bridge (iptables cannot number a zone by the
//! device's index), and a bridge is usually made after the port it carries was bound: waiting for the
//! next periodic check would leave the bridge's first connections in the zone 0. The watch says only
//! *that* devices of the kinds asked for changed, once per burst; the caller reads the devices again
//! (one dump), so a notification lost to a full buffer costs nothing but a read.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_sys::protocols::NETLINK_ROUTE;

use super::links::{link_of, RTM_DELLINK, RTM_NEWLINK};
use super::rtnl::{align4, NLMSG_HDRLEN};
use crate::error::{SysCode, SysError};
use crate::netlink::{open_subscribed, ListenerThread, Woken};

/// The rtnetlink multicast group of link notifications (include/uapi/linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
/// A device's making comes as several notifications a few hundred microseconds apart (made, its
/// address, up, enslaved): they are told as one change once the group has been quiet this long...
const SETTLE: Duration = Duration::from_millis(5);
/// ...or once the first of them is this old, whatever follows.
const SETTLE_MAX: Duration = Duration::from_millis(100);
/// Room for a burst of notifications (a host plugging many ports at once): with less, some are lost
/// and the change is told anyway.
const RCVBUF: usize = 1 << 20;

/// Whether a datagram of link notifications names a device of one of `kinds` (every device when
/// `kinds` is empty). A notification that cannot be read counts as one that does: the caller's
/// read of every device is the truth either way.
pub fn names_a_kind(mut b: &[u8], kinds: &[String]) -> bool {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
        let msg_type = u16::from_ne_bytes(b[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > b.len() {
            return true;
        }
        if msg_type == RTM_NEWLINK || msg_type == RTM_DELLINK {
            match link_of(&b[NLMSG_HDRLEN..len]) {
                None => return true,
                Some(l) if kinds.is_empty() || l.kind.as_ref().is_some_and(|k| kinds.contains(k)) => return true,
                Some(_) => {}
            }
        }
        b = &b[align4(len).min(b.len())..];
    }
    false
}

pub struct LinkWatch {
    thread: ListenerThread,
}

impl LinkWatch {
    /// Joins the namespace's link notifications (so a namespace that cannot be had is an error
    /// here) and calls `on_change` once per burst of changes to devices of `kinds` (every device when
    /// empty), and also when notifications were lost; `on_error` hears of the socket failing, which
    /// ends the watch.
    pub fn start<F, G>(netns: Option<&Path>, kinds: Vec<String>, on_change: F, on_error: G) -> Result<LinkWatch, SysError>
    where
        F: Fn() + Send + 'static,
        G: Fn(String) + Send + 'static,
    {
        let sock =
            open_subscribed(NETLINK_ROUTE, RTNLGRP_LINK, RCVBUF, netns).map_err(|e| SysError::from_io(SysCode::ConntrackFailed, &e))?;
        let thread = ListenerThread::spawn("sg-links", move |signal| {
            let fd = sock.as_raw_fd();
            let mut buf = vec![0u8; 64 << 10];
            // When the first change not yet told came, and the newest.
            let mut pending: Option<(Instant, Instant)> = None;
            while !signal.is_stopped() {
                // Idle, the thread sleeps until the kernel or the stop wakes it.
                let due = pending.map(|(first, last)| (last + SETTLE).min(first + SETTLE_MAX).saturating_duration_since(Instant::now()));
                match signal.wait(fd, due) {
                    Ok(Woken::Stopped) => return,
                    Ok(Woken::Readable | Woken::TimedOut) => {}
                    Err(e) => {
                        on_error(format!("device notifications: {e}"));
                        return;
                    }
                }
                let mut changed = false;
                loop {
                    // SAFETY: recv into our own buffer, bounded by its length.
                    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
                    if n >= 0 {
                        changed |= names_a_kind(&buf[..n as usize], &kinds);
                        continue;
                    }
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                        // Some were lost: the caller's read of the devices is the truth anyway.
                        Some(libc::ENOBUFS) => changed = true,
                        _ => {
                            on_error(format!("device notifications: {e}"));
                            return;
                        }
                    }
                }
                let now = Instant::now();
                if changed {
                    pending = Some((pending.map_or(now, |(first, _)| first), now));
                }
                if let Some((first, last)) = pending {
                    if now >= last + SETTLE || now >= first + SETTLE_MAX {
                        pending = None;
                        on_change();
                    }
                }
            }
        })
        .map_err(|e| SysError::from_io(SysCode::ConntrackFailed, &e))?;
        Ok(LinkWatch { thread })
    }

    /// Stops hearing; returns once the thread is gone (at once: its wait ends on the stop).
    pub fn stop(&mut self) {
        self.thread.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::rtnl::testing::reply;
    use super::*;

    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINKINFO: u16 = 18;

    /// A link notification as the kernel multicasts it (sequence 0), of a device of `kind`.
    fn notification(msg_type: u16, index: u32, name: &[u8], kind: Option<&[u8]>) -> Vec<u8> {
        let mut head = vec![0u8, 0, 1, 0];
        head.extend_from_slice(&index.to_ne_bytes());
        head.extend_from_slice(&[0; 8]);
        let info = kind.map(|k| {
            let mut v = (((4 + k.len() + 1) as u16).to_ne_bytes()).to_vec();
            v.extend_from_slice(&1u16.to_ne_bytes());
            v.extend_from_slice(k);
            v.push(0);
            v.resize(align4(v.len()), 0);
            v
        });
        let mut attrs: Vec<(u16, &[u8])> = vec![(IFLA_IFNAME, name)];
        if let Some(i) = &info {
            attrs.push((IFLA_LINKINFO, i));
        }
        reply(msg_type, 0, &head, &attrs)
    }

    #[test]
    fn only_devices_of_the_kinds_asked_for_are_a_change() {
        let bridges = vec!["bridge".to_owned()];
        let veth = notification(RTM_NEWLINK, 7, b"tap1\0", Some(b"veth"));
        let physical = notification(RTM_NEWLINK, 2, b"eth0\0", None);
        let bridge_made = notification(RTM_NEWLINK, 8, b"qbr1\0", Some(b"bridge"));
        let bridge_gone = notification(RTM_DELLINK, 8, b"qbr1\0", Some(b"bridge"));
        assert!(!names_a_kind(&veth, &bridges));
        assert!(!names_a_kind(&physical, &bridges));
        assert!(names_a_kind(&bridge_made, &bridges));
        assert!(names_a_kind(&bridge_gone, &bridges));
        // One datagram of several: the bridge among them is found.
        let both = [veth.clone(), bridge_gone].concat();
        assert!(names_a_kind(&both, &bridges));
        // No kinds: every device.
        assert!(names_a_kind(&physical, &[]));
        // Other rtnetlink messages (an address) are not link changes.
        let addr = reply(20, 0, &[2, 24, 0, 0, 7, 0, 0, 0], &[]);
        assert!(!names_a_kind(&addr, &bridges));
    }

    #[test]
    fn an_unreadable_notification_counts_as_a_change() {
        let bridges = vec!["bridge".to_owned()];
        // A length running past the datagram.
        let mut bad = notification(RTM_NEWLINK, 7, b"tap1\0", Some(b"veth"));
        bad[0] = 200;
        assert!(names_a_kind(&bad, &bridges));
        // A body too short for its family header.
        let short = reply(RTM_NEWLINK, 0, &[0, 0], &[]);
        assert!(names_a_kind(&short, &bridges));
    }
}

//! Opening kernel sockets inside another network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that created it, for its whole life.
//! So instead of moving the whole process (which would disturb every other thread, including
//! Node's), we create the socket on a short-lived helper thread that has joined the target
//! namespace, and hand the finished socket back.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `make` with the calling context switched into the network namespace at `netns_path`
/// (`/var/run/netns/NAME`, `/proc/PID/ns/net`), or in the current namespace when `None`.
pub fn in_netns<T, F>(netns_path: Option<&Path>, make: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let Some(path) = netns_path else {
        return make();
    };
    let ns = File::open(path).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot open network namespace {}: {e}", path.display()))
    })?;
    std::thread::Builder::new()
        .name("sg-netns".into())
        .spawn(move || {
            // SAFETY: setns on this dedicated thread only; it exits right after `make`.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            make()
        })?
        .join()
        .map_err(|_| io::Error::other("netns helper thread panicked"))?
}

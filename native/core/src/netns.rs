//! Opening kernel sockets inside another network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that created it, for its whole life.
//! So instead of moving the whole process (which would disturb every other thread, including
//! Node's), we create the socket on a short-lived helper thread that has joined the target
//! namespace, and hand the finished socket back.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The namespace could not be opened or joined; carried inside the `io::Error` that `in_netns`
/// returns, so that callers can tell it from a failure of the work itself (`netns_failure`).
#[derive(Debug)]
pub struct NetnsUnavailable {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for NetnsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot enter network namespace {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for NetnsUnavailable {}

fn unavailable(path: &Path, source: io::Error) -> io::Error {
    io::Error::new(source.kind(), NetnsUnavailable { path: path.to_path_buf(), source })
}

/// The namespace's own failure, when `e` says the namespace was unavailable (rather than the work
/// done inside it failed): the one test every error type of the addon uses for NETNS_UNAVAILABLE.
pub fn netns_failure(e: &io::Error) -> Option<&NetnsUnavailable> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<NetnsUnavailable>())
}

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
    let ns = File::open(path).map_err(|e| unavailable(path, e))?;
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("sg-netns".into())
        .spawn(move || {
            // SAFETY: setns on this dedicated thread only; it exits right after `make`.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(unavailable(&owned, io::Error::last_os_error()));
            }
            make()
        })?
        .join()
        .map_err(|_| io::Error::other("netns helper thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_told_apart_from_the_work() {
        let e = in_netns(Some(Path::new("/nonexistent/netns")), || Ok(())).unwrap_err();
        assert!(netns_failure(&e).is_some(), "{e}");
        assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
        let e = in_netns(None, || -> io::Result<()> { Err(io::Error::other("inner")) }).unwrap_err();
        assert!(netns_failure(&e).is_none());
    }
}

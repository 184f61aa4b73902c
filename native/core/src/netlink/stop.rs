//! How a listener thread waits: on its socket and on its stop at once (an eventfd), with no timeout
//! unless it has something due. Polling with a timeout to look at a stop flag woke each listener ten
//! times a second on an idle host, some tens of microseconds of CPU each time, for nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The watched descriptor has something to read.
    Readable,
    /// `stop()` was called (now or before): the thread is to end.
    Stopped,
    /// The timeout passed, or a signal interrupted the wait.
    TimedOut,
}

pub struct StopSignal {
    fd: OwnedFd,
    stopped: AtomicBool,
}

impl StopSignal {
    pub fn new() -> io::Result<StopSignal> {
        // SAFETY: eventfd takes no pointers; a valid descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(StopSignal { fd: unsafe { OwnedFd::from_raw_fd(fd) }, stopped: AtomicBool::new(false) })
    }

    /// Asks the waiting thread to end: its wait returns `Stopped` now, and every later one at once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a value we own to our own eventfd. It cannot fail but by
        // overflowing the counter, which a reader that only polls never drains: still readable.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Waits `d`, or less if the stop is asked; true if it was.
    pub fn pause(&self, d: Duration) -> bool {
        let mut fd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = d.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll on our own descriptor.
        unsafe { libc::poll(&mut fd, 1, ms) };
        self.is_stopped()
    }

    /// Waits until `fd` has something to read, the stop is asked, or `timeout` passes (`None`: no
    /// timeout). A stop wins over a readable descriptor.
    pub fn wait(&self, fd: RawFd, timeout: Option<Duration>) -> io::Result<Woken> {
        if self.is_stopped() {
            return Ok(Woken::Stopped);
        }
        // Rounded up: a wait due in half a millisecond must not return at once and spin.
        let ms = timeout.map_or(-1, |t| t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32);
        let mut fds = [
            libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: poll on two descriptors we hold, in an array we own.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(Woken::TimedOut) } else { Err(e) };
        }
        if self.is_stopped() || fds[1].revents != 0 {
            return Ok(Woken::Stopped);
        }
        // POLLERR / POLLHUP on the socket too: the read that follows reports them.
        Ok(if fds[0].revents != 0 { Woken::Readable } else { Woken::TimedOut })
    }
}

/// A listener's thread and the stop it waits on: `stop()` (or dropping it) asks the thread to end and
/// returns once it is gone, at once unless the thread is in the middle of some work.
pub struct ListenerThread {
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl ListenerThread {
    /// Runs `body` on a thread named `name`, handing it the signal to wait on.
    pub fn spawn(name: &str, body: impl FnOnce(&StopSignal) + Send + 'static) -> io::Result<ListenerThread> {
        let stop = Arc::new(StopSignal::new()?);
        let signal = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || body(&signal))?;
        Ok(ListenerThread { stop, thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ListenerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wait_ends_on_the_stop_on_data_or_on_its_timeout() {
        let mut pair = [0; 2];
        // SAFETY: pipe into an array we own.
        assert_eq!(unsafe { libc::pipe(pair.as_mut_ptr()) }, 0);
        let (r, w) = (pair[0], pair[1]);
        let stop = std::sync::Arc::new(StopSignal::new().unwrap());
        assert_eq!(stop.wait(r, Some(Duration::from_millis(1))).unwrap(), Woken::TimedOut);
        // SAFETY: a one-byte write to our own pipe.
        assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(stop.wait(r, None).unwrap(), Woken::Readable);
        // A stop from another thread ends a wait with no timeout; every wait after it ends at once.
        let other = stop.clone();
        let started = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.stop();
        });
        let mut pair2 = [0; 2];
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pipe(pair2.as_mut_ptr()) }, 0);
        assert_eq!(stop.wait(pair2[0], None).unwrap(), Woken::Stopped);
        assert!(started.elapsed() >= Duration::from_millis(20));
        t.join().unwrap();
        assert_eq!(stop.wait(r, None).unwrap(), Woken::Stopped, "a stop wins over data");
        for fd in [r, w, pair2[0], pair2[1]] {
            // SAFETY: closing descriptors this test opened.
            unsafe { libc::close(fd) };
        }
    }
}

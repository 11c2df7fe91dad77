//! Sleeping until a deadline with microsecond precision. Tokio's timer rounds a sleep up to
//! the next whole millisecond, so a producer woken by it generates its records up to a
//! millisecond after they were due, and that lateness of the load generator's own lands in
//! every produce latency it reports (they are measured from the intended send time). A
//! timerfd on CLOCK_REALTIME (the clock of [`crate::stats::now_us`]), armed at the absolute
//! deadline and awaited through the runtime's reactor, wakes on time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    pub fn new() -> io::Result<PreciseTimer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new
        // descriptor that only this value owns.
        let raw = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the descriptor is owned by the `OwnedFd` moved into the `AsyncFd`, which
        // neither replaces nor closes it while registered.
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(PreciseTimer { fd })
    }

    /// Returns at `deadline_us` (microseconds since the Unix epoch), or at once when it has
    /// passed.
    pub async fn sleep_until_us(&self, deadline_us: i64) -> io::Result<()> {
        if deadline_us <= crate::stats::now_us() {
            return Ok(());
        }
        let when = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: deadline_us.div_euclid(1_000_000),
                tv_nsec: deadline_us.rem_euclid(1_000_000) * 1000,
            },
        };
        // SAFETY: `when` is a valid itimerspec; the old value is not asked for. Setting the
        // timer also clears any expiration not yet read.
        let set = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &when,
                std::ptr::null_mut(),
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads at most 8 bytes into a u64 this frame owns.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            if read == std::mem::size_of::<u64>() as isize {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock {
                return Err(error);
            }
            ready.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::now_us;

    /// Never woken early, whether or not the timer was armed before; a deadline already
    /// passed returns at once.
    #[tokio::test]
    async fn wakes_at_or_after_each_deadline() {
        let timer = PreciseTimer::new().unwrap();
        for wait in [300, 50, 1500, 10, 700] {
            let deadline = now_us() + wait;
            timer.sleep_until_us(deadline).await.unwrap();
            let woke = now_us();
            assert!(woke >= deadline, "woke {} us early", deadline - woke);
        }
        timer.sleep_until_us(now_us() - 5).await.unwrap();
    }
}

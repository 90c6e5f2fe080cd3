//! A scheduler hint for the threads a store passes through: a short slice.
//!
//! A store hops between threads: a Tokio worker runs the request and the Raft core, the log
//! writer thread writes and fsyncs, a worker again applies and answers. On a busy machine a
//! woken thread waited for the running one's whole slice before it ran (the log writer
//! started its write 110–150 µs after the append was handed to it; see `docs/design.md`).
//! Linux's EEVDF scheduler (6.12 and later) lets a normal thread ask for a shorter slice
//! with `sched_setattr`'s `sched_runtime` (Peter Zijlstra, "sched/eevdf: Use
//! sched_attr::sched_runtime to set request/slice suggestion"; the kernel clamps it to
//! 0.1–100 ms). A thread with a shorter slice gets an earlier deadline, so it runs soon
//! after it is woken; its share of the CPU does not change. No privilege is needed, and
//! older kernels ignore the field for normal threads.

use std::time::Duration;

/// Why the calling thread's slice was not set.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The thread runs under another policy than the normal one (a real-time or idle policy
    /// chosen by the operator is left alone).
    #[error("the thread does not run under the normal scheduling policy")]
    NotNormalPolicy,
    /// The kernel refused (`getpriority` or `sched_setattr` failed).
    #[error("{call} failed")]
    Syscall {
        /// The call that failed.
        call: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// Not a Linux system.
    #[error("scheduler slices are a Linux feature")]
    Unsupported,
}

/// Asks the kernel to run the calling thread with a scheduler slice of `slice` (the kernel
/// clamps it to 0.1–100 ms), keeping its nice value. Only for threads under the normal
/// policy (`SCHED_OTHER`).
pub fn request(slice: Duration) -> Result<(), SliceError> {
    imp::request(slice)
}

/// The calling thread's slice as the kernel reports it (`sched_getattr`'s `sched_runtime`):
/// the slice it runs with on kernels with custom slices, 0 on older ones.
pub fn current() -> Result<Duration, SliceError> {
    imp::of_thread(0)
}

/// The slice the kernel reports for thread `tid` (any thread the caller may inspect; 0: the
/// calling thread), as [`current`] does.
pub fn of_thread(tid: i32) -> Result<Duration, SliceError> {
    imp::of_thread(tid)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::SliceError;
    use std::time::Duration;

    /// The kernel's `struct sched_attr`, its first version (`SCHED_ATTR_SIZE_VER0`, 48 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
    }

    fn syscall_error(call: &'static str) -> SliceError {
        SliceError::Syscall {
            call,
            source: std::io::Error::last_os_error(),
        }
    }

    /// The calling thread's nice value (Linux's `getpriority` applies to the calling
    /// thread; -1 is a valid value, so errno tells a failure apart).
    fn nice() -> Result<i32, SliceError> {
        // SAFETY: errno is thread-local; clearing it before the call is the documented way
        // to detect a failure of getpriority.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: no pointers; 0 names the calling thread.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        if nice == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
            return Err(syscall_error("getpriority"));
        }
        Ok(nice)
    }

    pub(super) fn request(slice: Duration) -> Result<(), SliceError> {
        // SAFETY: no pointers; 0 names the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 {
            return Err(syscall_error("sched_getscheduler"));
        }
        if policy != libc::SCHED_OTHER {
            return Err(SliceError::NotNormalPolicy);
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            // Given again: sched_setattr sets the nice value too, and lowering it would
            // need a privilege.
            sched_nice: nice()?,
            sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            ..SchedAttr::default()
        };
        // SAFETY: `attr` is a valid sched_attr of the size it declares and outlives the
        // call; 0 names the calling thread; no flags.
        let done =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
        if done != 0 {
            return Err(syscall_error("sched_setattr"));
        }
        Ok(())
    }

    pub(super) fn of_thread(tid: i32) -> Result<Duration, SliceError> {
        let mut attr = SchedAttr::default();
        // SAFETY: `attr` is writable for the size passed; `tid` is only looked up.
        let done = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                tid,
                &mut attr as *mut SchedAttr,
                std::mem::size_of::<SchedAttr>() as u32,
                0u32,
            )
        };
        if done != 0 {
            return Err(syscall_error("sched_getattr"));
        }
        Ok(Duration::from_nanos(attr.sched_runtime))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::SliceError;
    use std::time::Duration;

    pub(super) fn request(_slice: Duration) -> Result<(), SliceError> {
        Err(SliceError::Unsupported)
    }

    pub(super) fn of_thread(_tid: i32) -> Result<Duration, SliceError> {
        Err(SliceError::Unsupported)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether this kernel has EEVDF's custom slices (Linux 6.12 and later).
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    /// Asks for `asked` on a fresh thread and returns the slice the kernel then reports
    /// (`None` on a kernel without custom slices, where only the request's success counts).
    fn slice_given_for(asked: Duration) -> Option<Duration> {
        std::thread::spawn(move || {
            request(asked).expect("set the slice");
            kernel_has_custom_slices().then(|| current().expect("read it back"))
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for() {
        if let Some(given) = slice_given_for(Duration::from_micros(250)) {
            assert_eq!(given, Duration::from_micros(250));
        }
    }

    #[test]
    fn the_slice_is_clamped_by_the_kernel_not_refused() {
        if let Some(given) = slice_given_for(Duration::from_micros(1)) {
            assert_eq!(given, Duration::from_micros(100));
        }
    }

    #[test]
    fn the_nice_value_is_kept() {
        std::thread::spawn(|| {
            // Raising one's own nice value needs no privilege.
            // SAFETY: no pointers; 0 names the calling thread (here and below).
            let raised = (unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } + 1).min(19);
            assert_eq!(
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, raised) },
                0
            );
            request(Duration::from_micros(100)).expect("set the slice");
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, raised);
        })
        .join()
        .expect("thread");
    }
}

//! Network namespaces for tests that cut the network between nodes: real partitions.
//!
//! Each test makes its own namespaces (`ip netns add`, from iproute2; root is needed, as for
//! the power-loss tests) and a veth pair between two of them. Taking one end of the pair
//! down cuts both directions at once, as a failed switch port would; bringing it up heals
//! it. The namespaces (and with them the veth pair and any process's sockets in them) are
//! deleted when the guards drop. Nothing outside the namespaces is touched.
//!
//! Nodes run inside a namespace under `ip netns exec NAME` (which execs the binary in place:
//! the PID is the server's). The test talks to them from a thread that has joined one of the
//! namespaces ([`run_in`]), on a runtime of that thread alone, so that every socket it
//! opens is in that namespace.

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why these tests cannot run here, if they cannot (not root, no `ip`).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

/// Runs `ip ARGS`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace of this test, deleted on drop.
pub struct Netns {
    /// Its name (`ip netns exec NAME ...`).
    pub name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// A new namespace with its loopback up.
    pub fn new() -> Netns {
        let name = format!(
            "smtest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The command prefix that runs a program inside this namespace.
    pub fn wrapper(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.name]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair between two namespaces, `a_addr` on `a`'s end and `b_addr` on `b`'s (both in
/// one /24, given without the prefix length).
pub struct Link {
    ns: String,
    dev: String,
}

impl Link {
    /// Creates the pair, addresses both ends and brings them up.
    pub fn new(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Link {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{}", std::process::id() % 100_000, n % 100);
        let (dev_a, dev_b) = (format!("sma{tag}"), format!("smb{tag}"));
        ip(&[
            "link", "add", &dev_a, "netns", &a.name, "type", "veth", "peer", "name", &dev_b,
            "netns", &b.name,
        ]);
        for (ns, dev, addr) in [(a, &dev_a, a_addr), (b, &dev_b, b_addr)] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]);
            ip(&["-n", &ns.name, "link", "set", dev, "up"]);
        }
        Link {
            ns: a.name.clone(),
            dev: dev_a,
        }
    }

    /// Cuts the link (both directions) or heals it.
    pub fn set_up(&self, up: bool) {
        ip(&[
            "-n",
            &self.ns,
            "link",
            "set",
            &self.dev,
            if up { "up" } else { "down" },
        ]);
    }
}

/// Runs `test` on a new thread that has joined `ns`, on a single-threaded runtime of that
/// thread (so every socket it opens is in `ns`); panics of the test are passed on.
pub fn run_in<F, Fut>(ns: &Netns, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let path = format!("/run/netns/{}", ns.name);
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        use std::os::fd::AsRawFd;
        // SAFETY: a valid namespace file descriptor; this only moves the calling thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

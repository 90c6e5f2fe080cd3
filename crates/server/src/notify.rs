//! systemd's readiness protocol (`sd_notify(3)`) for `Type=notify` units.
//!
//! systemd passes the path of a datagram socket in `$NOTIFY_SOCKET`; the service sends it
//! newline-separated `KEY=VALUE` assignments such as `READY=1`, `STOPPING=1` and
//! `STATUS=…`. Without `$NOTIFY_SOCKET` every call here does nothing. Written on std's
//! `UnixDatagram` rather than a crate: the protocol is one `sendto(2)` per message.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract-namespace socket (`@name` in `$NOTIFY_SOCKET`).
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

/// Sends state changes to the service manager, if there is one.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (once; the variable is left as it is). Unset, empty or of an
    /// unsupported form: a notifier that does nothing.
    pub fn from_env() -> Notifier {
        Notifier::from_value(std::env::var_os("NOTIFY_SOCKET"))
    }

    fn from_value(value: Option<std::ffi::OsString>) -> Notifier {
        use std::os::unix::ffi::OsStrExt;
        let Some(value) = value else {
            return Notifier::default();
        };
        let bytes = value.as_bytes();
        let target = match bytes.first() {
            Some(b'/') => Some(Target::Path(PathBuf::from(value))),
            #[cfg(target_os = "linux")]
            Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
            // vsock (`vsock:CID:PORT`) and relative paths are not supported.
            _ => None,
        };
        Notifier { target }
    }

    /// Whether a service manager is listening (`$NOTIFY_SOCKET` was usable).
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (e.g. `"READY=1\nSTATUS=serving"`). Failures are logged at DEBUG and
    /// otherwise ignored: the service manager going away must not stop the server.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send(target, state.as_bytes()) {
            tracing::debug!("cannot notify the service manager ({target:?}): {e}");
        }
    }

    /// `READY=1` with a status line: start-up is complete.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1` with a status line: shutting down.
    pub fn stopping(&self, status: &str) {
        self.notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`: free text shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }
}

/// A status value must not contain a newline (it would start a new assignment).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn send(target: &Target, message: &[u8]) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let sent = match target {
        Target::Path(path) => socket.send_to(message, path)?,
        #[cfg(target_os = "linux")]
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)?
        }
    };
    if sent != message.len() {
        return Err(std::io::Error::other("short datagram write"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn without_notify_socket_nothing_happens() {
        let n = Notifier::from_value(None);
        assert!(!n.enabled());
        n.ready("x"); // no panic, no effect
        assert!(!Notifier::from_value(Some("".into())).enabled());
        assert!(!Notifier::from_value(Some("relative/path".into())).enabled());
    }

    #[test]
    fn sends_datagrams_to_the_socket_path() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path)?;
        listener.set_read_timeout(Some(Duration::from_secs(5)))?;
        let n = Notifier::from_value(Some(path.clone().into_os_string()));
        assert!(n.enabled());
        n.ready("serving\non port 1");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving on port 1");
        n.stopping("draining");
        let len = listener.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=draining");
        Ok(())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_abstract_sockets() -> std::io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("statemanager-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let listener = UnixDatagram::bind_addr(&addr)?;
        listener.set_read_timeout(Some(Duration::from_secs(5)))?;
        let n = Notifier::from_value(Some(format!("@{name}").into()));
        n.status("hello");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"STATUS=hello");
        Ok(())
    }
}

//! End-to-end harness: runs the real `statemanager` binary on a free 127.0.0.1 port with its
//! own temporary data directory, and stops it (by PID) when dropped. Logs are kept in the
//! temporary directory and printed when a test fails while the server is alive.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_statemanager")
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// Its working directory (config, log, addr file; data in `data/`).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:PORT` (or the HTTPS address when plain HTTP is off).
    pub base: String,
    /// `https://127.0.0.1:PORT` when HTTPS is on.
    pub https: Option<String>,
    /// Extra flags it was started with.
    flags: Vec<String>,
}

impl Server {
    /// Starts a server with `config` (YAML, may be empty) in a fresh temporary directory.
    pub fn start(config: &str) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, config, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server in `dir` (re-using its data, for restarts).
    pub fn start_in(dir: &Path, config: &str, flags: &[&str]) -> Server {
        // reqwest is built without a default crypto provider (we use ring, as the server);
        // every test starts a server before it makes a client, so install it here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::write(dir.join("config.yaml"), config).expect("write config");
        let addr_file = dir.join("addr.json");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--log-stderr")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn statemanager");
        let mut server = Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            base: String::new(),
            https: None,
            flags: flags.iter().map(|s| s.to_string()).collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("addr json");
                server.https = v["https"].as_str().map(|a| format!("https://{a}"));
                server.base = match v["http"].as_str() {
                    Some(a) => format!("http://{a}"),
                    None => server.https.clone().expect("an http or https address"),
                };
                break;
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until `/ready` says 200 (on plain HTTP; use [`Server::wait_ready_with`] when
    /// only HTTPS is served).
    pub async fn wait_ready(&self) {
        self.wait_ready_with(&reqwest::Client::new()).await
    }

    /// Waits until `/ready` says 200, asking with `client`.
    pub async fn wait_ready_with(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(self.url("/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server never ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL, to our own child by PID
            let _ = child.wait();
        }
    }

    /// Sends a signal and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the PID of our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit after signal {signal}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Same directory and config, started again.
    pub fn restart(&mut self) {
        self.kill9();
        let config = std::fs::read_to_string(self.dir.join("config.yaml")).unwrap_or_default();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let mut next = Server::start_in(&self.dir, &config, &flags);
        self.base = next.base.clone();
        self.https = next.https.clone();
        self.child = next.child.take();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- server log ({}) ---\n{}",
                    self.dir.display(),
                    self.log()
                );
            }
        }
    }
}

/// POSTs a JSON value; returns status and parsed body (`Null` when not JSON).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    post_raw(client, url, body.to_string()).await
}

/// POSTs raw bytes.
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let r = client.post(url).body(body).send().await.expect("request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

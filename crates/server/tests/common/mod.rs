//! End-to-end harness: runs the real `statemanager` binary on a free 127.0.0.1 port with its
//! own temporary data directory, and stops it (by PID) when dropped. Logs are kept in the
//! temporary directory and printed when a test fails while the server is alive.
#![allow(dead_code)]

pub mod certs;
pub mod netns;
pub mod python;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_statemanager")
}

/// Copies the directory tree `from` into `to` (created, with any missing parents), files and
/// directories only, durably: every file and directory copied, and `to`'s parent, are
/// fsync'd (so a copy onto the power-cut file system survives a cut).
pub fn copy_tree(from: &Path, to: &Path) {
    let sync = |path: &Path| {
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .expect("copy: fsync")
    };
    std::fs::create_dir_all(to).expect("copy: directory");
    sync(to.parent().expect("copy: parent"));
    for entry in std::fs::read_dir(from).expect("copy: read") {
        let entry = entry.expect("copy: entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("copy: type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy: file");
            sync(&target);
        }
    }
    sync(to);
}

/// Runs the binary with `args` (a CLI command) to its end: whether it succeeded, and its
/// standard output followed by its standard error.
pub fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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
    /// Its data directory (`dir/data` unless started with [`Server::start_full`]).
    pub data_dir: PathBuf,
    /// Extra environment it was started with.
    env: Vec<(String, std::ffi::OsString)>,
    /// The command the binary runs under, e.g. `ip netns exec NAME` (empty: none).
    wrapper: Vec<String>,
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
        Server::start_with_env(dir, config, flags, &[])
    }

    /// Starts a server in `dir` with extra environment variables (e.g. `NOTIFY_SOCKET`).
    /// `NOTIFY_SOCKET` is removed from the inherited environment unless given here, so a
    /// test run under systemd does not notify it.
    pub fn start_with_env(
        dir: &Path,
        config: &str,
        flags: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Server {
        Server::start_full(dir, &dir.join("data"), config, flags, env)
    }

    /// Starts a server in `dir` whose data directory is `data_dir` (e.g. on a power-cut file
    /// system), with extra flags and environment.
    pub fn start_full(
        dir: &Path,
        data_dir: &Path,
        config: &str,
        flags: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Server {
        let mut server = Server::launch(dir, data_dir, config, flags, env);
        server.wait_started();
        server
    }

    /// Spawns a server like [`Server::start_full`] without waiting for it to start (to kill
    /// it during its start-up); [`Server::wait_started`] waits.
    pub fn launch(
        dir: &Path,
        data_dir: &Path,
        config: &str,
        flags: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Server {
        Server::launch_wrapped(&[], dir, data_dir, config, flags, env)
    }

    /// Like [`Server::launch`], with the binary run under `wrapper` (a command that execs
    /// its arguments in place, so the PID is the server's: `ip netns exec NAME`); kept for
    /// restarts.
    pub fn launch_wrapped(
        wrapper: &[&str],
        dir: &Path,
        data_dir: &Path,
        config: &str,
        flags: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Server {
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
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary());
                cmd
            }
            None => Command::new(binary()),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--log-stderr")
            .args(flags)
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn statemanager");
        Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            base: String::new(),
            https: None,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            data_dir: data_dir.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_os_string()))
                .collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Waits (at most 30 s) until the server has written its addresses.
    pub fn wait_started(&mut self) {
        if let Err(e) = self.try_wait_started(Duration::from_secs(30)) {
            panic!("{e}");
        }
    }

    /// Waits (at most `limit`) until the server has written its addresses; the reason (with
    /// its log) when it exits first or takes longer.
    pub fn try_wait_started(&mut self, limit: Duration) -> Result<(), String> {
        let addr_file = self.dir.join("addr.json");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("addr json");
                self.https = v["https"].as_str().map(|a| format!("https://{a}"));
                self.base = match v["http"].as_str() {
                    Some(a) => format!("http://{a}"),
                    None => self.https.clone().expect("an http or https address"),
                };
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "server exited early with {status}:\n{}",
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("server did not start:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Waits (at most `limit`) for the process to exit on its own; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Same directory and config, started again.
    pub fn restart(&mut self) {
        self.kill9();
        let config = std::fs::read_to_string(self.dir.join("config.yaml")).unwrap_or_default();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let env: Vec<(&str, &std::ffi::OsStr)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_os_str()))
            .collect();
        let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
        let mut next =
            Server::launch_wrapped(&wrapper, &self.dir, &self.data_dir, &config, &flags, &env);
        next.wait_started();
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

/// Waits for `child` at most `limit`; kills it (our own child, by PID) when it runs longer.
/// Its exit status when it ended in time.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`), from which it picks the source
/// port of every outgoing connection and the port of every `bind(0)`.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// `n` distinct free ports on 127.0.0.1, for addresses a node must be told before it starts
/// (a peer list names its ports in advance). They are bound to check they are free, then
/// released for the node to bind. They are taken from outside the ephemeral range: a port
/// from `bind(0)` can be handed to another test's outgoing connection as its source port
/// between the release and the node's bind (a node once failed to start with "Address
/// already in use" that way). Within this process no port is handed out twice; each test
/// process starts at its own offset.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = (
        u32::from(ephemeral_range().0),
        u32::from(ephemeral_range().1),
    );
    // The larger of the ranges below (from 10000) and above the ephemeral one.
    let below = (10_000, low.saturating_sub(1));
    let above = (high + 1, 65_535);
    let size = |(a, b): (u32, u32)| (b + 1).saturating_sub(a);
    let (first, last) = if size(below) >= size(above) {
        below
    } else {
        above
    };
    let span = size((first, last));
    if span < 1_000 {
        // The ephemeral range covers (nearly) every port: let the kernel pick.
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        return listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
    }
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let mut ports = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(n);
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let port = (first + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push(listener);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free ports in {first}..={last}");
    ports
}

/// A cluster of real processes, one temporary directory each.
/// How [`Cluster`] launches its nodes' processes.
#[derive(Clone, Copy)]
enum Launch<'a> {
    /// Each started (listening) before the next is launched.
    OneByOne,
    /// All launched at once, but those at the indexes in `absent`.
    Together { absent: &'a [usize] },
}

pub struct Cluster {
    /// The nodes, index `i` is node id `i + 1`.
    pub nodes: Vec<Option<Server>>,
    dirs: Vec<tempfile::TempDir>,
    configs: Vec<String>,
    /// Extra environment of each node (kept for restarts), e.g. libfaketime's.
    envs: Vec<Vec<(String, std::ffi::OsString)>>,
    /// Where node `i` keeps its data (`None`: `data/` in its working directory).
    data_dirs: Vec<Option<PathBuf>>,
}

impl Cluster {
    /// Starts `n` nodes that form one cluster from their `peers` lists.
    pub fn start(n: usize, extra: &str) -> Cluster {
        Cluster::start_prepared(n, extra, &|_, _| {})
    }

    /// Like [`Cluster::start`], but calls `prepare(dir, config_path)` for each node after its
    /// configuration is written and before it starts (e.g. to restore a backup into it).
    pub fn start_prepared(n: usize, extra: &str, prepare: &dyn Fn(&Path, &Path)) -> Cluster {
        Cluster::start_full(n, extra, prepare, None, vec![Vec::new(); n])
    }

    /// Like [`Cluster::start_prepared`], with extra environment variables for each node
    /// (`envs[i]` for node index `i`; kept for its restarts).
    pub fn start_with_envs(
        n: usize,
        extra: &str,
        prepare: &dyn Fn(&Path, &Path),
        envs: Vec<Vec<(String, std::ffi::OsString)>>,
    ) -> Cluster {
        Cluster::start_full(n, extra, prepare, None, envs)
    }

    /// Like [`Cluster::start_full`], with node `i`'s data directory at `data_root/node<i+1>`
    /// (e.g. on a power-cut file system).
    pub fn start_on(n: usize, extra: &str, data_root: &Path) -> Cluster {
        Cluster::start_full(n, extra, &|_, _| {}, Some(data_root), vec![Vec::new(); n])
    }

    /// Like [`Cluster::start`], but every process is launched before any is waited for, as
    /// when the machines of a new cluster boot together.
    pub fn start_together(n: usize, extra: &str) -> Cluster {
        Cluster::start_together_without(n, extra, &[])
    }

    /// Like [`Cluster::start_together`], leaving the nodes at the indexes in `absent` down
    /// (configured, never started; [`Cluster::restart`] starts one).
    pub fn start_together_without(n: usize, extra: &str, absent: &[usize]) -> Cluster {
        let mut cluster = Cluster::launch_all(
            n,
            extra,
            &|_, _| {},
            None,
            vec![Vec::new(); n],
            Launch::Together { absent },
        );
        for server in cluster.nodes.iter_mut().flatten() {
            server.wait_started();
        }
        cluster
    }

    fn start_full(
        n: usize,
        extra: &str,
        prepare: &dyn Fn(&Path, &Path),
        data_root: Option<&Path>,
        envs: Vec<Vec<(String, std::ffi::OsString)>>,
    ) -> Cluster {
        Cluster::launch_all(n, extra, prepare, data_root, envs, Launch::OneByOne)
    }

    /// Writes every node's configuration and launches the processes as `launch` says.
    fn launch_all(
        n: usize,
        extra: &str,
        prepare: &dyn Fn(&Path, &Path),
        data_root: Option<&Path>,
        envs: Vec<Vec<(String, std::ffi::OsString)>>,
        launch: Launch,
    ) -> Cluster {
        assert_eq!(envs.len(), n, "one environment per node");
        let ports = free_ports(n);
        let peers: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("  {}: 127.0.0.1:{p}\n", i + 1))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dirs: Vec::new(),
            configs: Vec::new(),
            envs,
            data_dirs: Vec::new(),
        };
        for (i, port) in ports.iter().enumerate() {
            let config = format!(
                "node_id: {}\npeer_listen: 127.0.0.1:{port}\npeers:\n{peers}{extra}",
                i + 1
            );
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("config.yaml"), &config).expect("write config");
            prepare(dir.path(), &dir.path().join("config.yaml"));
            let data_dir = data_root.map(|root| root.join(format!("node{}", i + 1)));
            let data = data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
            let server = match launch {
                Launch::OneByOne => Some(cluster.start_node(i, dir.path(), &data, &config)),
                Launch::Together { absent } if absent.contains(&i) => None,
                Launch::Together { .. } => Some(cluster.launch_node(i, dir.path(), &data, &config)),
            };
            cluster.nodes.push(server);
            cluster.data_dirs.push(data_dir);
            cluster.dirs.push(dir);
            cluster.configs.push(config);
        }
        cluster
    }

    /// The running node at index `i`.
    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Indexes of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// Waits until every running node is ready and they agree on one leader; returns its index.
    pub async fn wait_leader(&self) -> usize {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = std::collections::BTreeSet::new();
            let mut all_ready = true;
            for i in self.running() {
                let s = self.node(i);
                let ready = client
                    .get(s.url("/ready"))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                all_ready &= ready;
                if let Ok(r) = client.get(s.url("/status")).send().await {
                    if let Ok(v) = r.json::<serde_json::Value>().await {
                        if let Some(id) = v["leader"]["id"].as_u64() {
                            leaders.insert(id);
                        }
                    }
                }
            }
            if all_ready && leaders.len() == 1 {
                let id = *leaders.iter().next().expect("one leader") as usize;
                if self.nodes[id - 1].is_some() {
                    return id - 1;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {:?}",
                self.running()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds a node that starts empty (`join: true`) with id `id`; returns its peer address.
    /// It is not a member until `cluster add` makes it one.
    pub fn start_joiner(&mut self, id: u64, extra: &str) -> String {
        let port = free_ports(1)[0];
        let config = format!("node_id: {id}\npeer_listen: 127.0.0.1:{port}\njoin: true\n{extra}");
        let dir = tempfile::tempdir().expect("tempdir");
        self.nodes
            .push(Some(Server::start_in(dir.path(), &config, &[])));
        self.dirs.push(dir);
        self.configs.push(config);
        self.envs.push(Vec::new());
        self.data_dirs.push(None);
        format!("127.0.0.1:{port}")
    }

    /// Whether node `i` has purged its log at least once (its purge marker exists).
    pub fn has_purged(&self, i: usize) -> bool {
        self.node(i)
            .data_dir
            .join("log/meta/wal-purged-index")
            .exists()
    }

    /// The working directory of node `i` (config, log, `data/`).
    pub fn node_dir(&self, i: usize) -> std::path::PathBuf {
        self.dirs[i].path().to_path_buf()
    }

    /// `/fetch_data` of `namespace`/`key` on every running node: (node index, status, body).
    pub async fn fetch_on_every_node(
        &self,
        client: &reqwest::Client,
        namespace: &str,
        key: &str,
    ) -> Vec<(usize, u16, serde_json::Value)> {
        let mut answers = Vec::new();
        for i in self.running() {
            let (status, body) = post(
                client,
                &self.node(i).url("/fetch_data"),
                serde_json::json!({"namespace": namespace, "key": key}),
            )
            .await;
            answers.push((i, status, body));
        }
        answers
    }

    /// The peer address of node `i` (from its config).
    pub fn peer_addr(&self, i: usize) -> String {
        let line = self.configs[i]
            .lines()
            .find(|l| l.starts_with("peer_listen: "))
            .expect("peer_listen");
        line.trim_start_matches("peer_listen: ").to_string()
    }

    /// Sends `signal` to node `i`'s process (e.g. SIGSTOP / SIGCONT).
    pub fn signal(&self, i: usize, signal: i32) {
        // SAFETY: kill(2) on the PID of our own child process.
        unsafe { libc::kill(self.node(i).pid() as i32, signal) };
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].take() {
            s.kill9();
        }
    }

    /// Starts node `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let dir = self.dirs[i].path();
        let data = self.data_dirs[i]
            .clone()
            .unwrap_or_else(|| dir.join("data"));
        let s = self.start_node(i, dir, &data, &self.configs[i]);
        self.nodes[i] = Some(s);
    }

    /// Starts node index `i` in `dir` on `data` with `config` and its environment.
    fn start_node(&self, i: usize, dir: &Path, data: &Path, config: &str) -> Server {
        let mut server = self.launch_node(i, dir, data, config);
        server.wait_started();
        server
    }

    /// Launches node `i`'s process with its environment, without waiting for it to start.
    fn launch_node(&self, i: usize, dir: &Path, data: &Path, config: &str) -> Server {
        let env: Vec<(&str, &std::ffi::OsStr)> = self.envs[i]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_os_str()))
            .collect();
        Server::launch(dir, data, config, &[], &env)
    }
}

/// GETs `url` and returns its body as text (`/metrics`, the banner).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text answer")
}

/// GETs `url` and parses its JSON answer (panics when it is not JSON).
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON answer")
}

/// POSTs a JSON value; returns status and parsed body (`Null` when not JSON).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    post_raw(client, url, body.to_string()).await
}

/// Stores `data` at `n`/`k` through `base` and takes the lock of `n`/`slow` with a
/// `get_data` (held 30 s), so that a later `get_data` of `slow` waits its `max_wait_time`:
/// the set-up of the tests that keep a request in its handler on an HTTP/2 connection.
#[allow(dead_code)] // Not every test binary that includes `common` uses it.
pub async fn store_and_hold_a_lock(client: &reqwest::Client, base: &str, data: &str) {
    let (st, got) = post(
        client,
        &format!("{base}/store_data"),
        serde_json::json!({"namespace":"n","key":"k","data":data,"ttl":60}),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    let (st, got) = post(
        client,
        &format!("{base}/get_data"),
        serde_json::json!({"namespace":"n","key":"slow","max_wait_time":30}),
    )
    .await;
    assert_eq!((st, &got["lock"]), (200, &serde_json::json!(true)), "{got}");
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

/// The value of the sample `name` (with its labels, if any) in a `/metrics` text; 0 when
/// absent.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

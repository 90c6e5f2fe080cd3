use std::path::PathBuf;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let shown = path.display().to_string();
    load(Some(&path), env)
        .map(|mut l| {
            for w in &mut l.warnings {
                *w = w.replace(&shown, "FILE");
            }
            l
        })
        .map_err(|e| e.to_string().replace(&shown, "FILE"))
}

#[test]
fn defaults_without_file() {
    let loaded = load(None, &no_env).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.config.port, 8184);
    assert_eq!(loaded.config.max_item_size, 16384);
    assert_eq!(loaded.config.max_items, 1024);
}

#[test]
fn flat_file_with_sizes() {
    let c = load_text(
        "host: 0.0.0.0\nport: 0\nmax_persistent_data_item_size: 16 KB\nmax_persistent_data_items: 50\nmax_items_per_namespace: 5\n",
        &no_env,
    )
    .unwrap()
    .config;
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 0);
    assert_eq!(c.max_item_size, 16384);
    assert_eq!(c.max_items, 50);
    assert_eq!(c.max_items_per_namespace, Some(5));
}

#[test]
fn cachemanager_mapping_is_read_inside() {
    let loaded = load_text(
        "cachemanager:\n  port: 9000\n  max_persistent_data_item_size: 1mb\n  peers: [a, b]\n  logging:\n    loggers:\n      opsview:\n        level: DEBUG\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(loaded.config.port, 9000);
    assert_eq!(loaded.config.max_item_size, 1 << 20);
    assert_eq!(loaded.config.log_level, LogLevel::Debug);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains("Opsview Deploy"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn opsview_cache_manager_settings_are_understood_not_warned_about() {
    let loaded = load_text(
        "cachemanager:\n  worker_timeout: 30\n  peer_refresh_time: 5\n  peer_connection_timeout: 0.5\n  cache_purge_time: 30\n  max_cache_size: 0B\n  max_item_size: 0B\n  timestamp_error_margin: 30\n  frobnicate: 1\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        vec!["unknown configuration key 'frobnicate' in FILE; ignored"]
    );
    let c = loaded.config;
    assert_eq!(c.worker_timeout, 30);
    assert_eq!(c.peer_refresh_ms, 5000);
    assert_eq!(c.peer_connection_timeout_ms, 500);
    assert_eq!(c.housekeeping_interval, 30);
    // 0B: no limit, as in the original (the item limit is then what a request can carry).
    assert_eq!(c.max_cache_size, u64::MAX);
    assert_eq!(c.cache_item_limit(), MAX_CACHE_ITEM);
    // The original's defaults.
    let d = Config::default();
    assert_eq!(
        (d.max_cache_size, d.cache_item_limit()),
        (1 << 30, 10 << 20)
    );
    assert_eq!(d.worker_timeout, 30);
    assert!(load_text("peer_connection_timeout: soon\n", &no_env)
        .unwrap_err()
        .contains("'peer_connection_timeout'"));
    assert!(load_text("peer_refresh_time: -1\n", &no_env)
        .unwrap_err()
        .contains("'peer_refresh_time'"));
}

#[test]
fn unknown_keys_warn_and_bad_values_fail_naming_key_and_file() {
    let loaded = load_text("port: 1\nfrobnicate: 3\n", &no_env).unwrap();
    assert_eq!(
        loaded.warnings,
        vec!["unknown configuration key 'frobnicate' in FILE; ignored"]
    );
    let err = load_text("port: seventy\n", &no_env).unwrap_err();
    assert_eq!(
        err,
        "invalid value for 'port' in FILE: expected a whole number, got 'seventy'"
    );
    let err = load_text("port: 70000\n", &no_env).unwrap_err();
    assert!(err.starts_with("invalid value for 'port' in FILE"), "{err}");
    let err = load_text("max_persistent_data_item_size: 16 TB\n", &no_env).unwrap_err();
    assert!(
        err.starts_with("invalid value for 'max_persistent_data_item_size' in FILE"),
        "{err}"
    );
    let err = load_text("log_stderr: maybe\n", &no_env).unwrap_err();
    assert!(err.contains("'log_stderr'"), "{err}");
    assert!(load_text("- a\n- b\n", &no_env)
        .unwrap_err()
        .contains("must be a mapping"));
    assert!(load_text("port: [\n", &no_env)
        .unwrap_err()
        .contains("not valid YAML"));
}

#[test]
fn environment_overrides_file() {
    let env = |var: &str| match var {
        "STATEMANAGER_PORT" => Some("9999".to_string()),
        "STATEMANAGER_LOG_STDERR" => Some("true".to_string()),
        "STATEMANAGER_MAX_PERSISTENT_DATA_ITEM_SIZE" => Some("2KB".to_string()),
        _ => None,
    };
    let c = load_text("port: 1\n", &env).unwrap().config;
    assert_eq!(c.port, 9999);
    assert!(c.log_stderr);
    assert_eq!(c.max_item_size, 2048);
    let bad = |var: &str| (var == "STATEMANAGER_PORT").then(|| "x".to_string());
    let err = load(None, &bad).unwrap_err().to_string();
    assert!(
        err.contains("environment variable STATEMANAGER_PORT"),
        "{err}"
    );
}

#[test]
fn an_environment_value_may_be_a_flow_mapping() {
    let env = |var: &str| match var {
        "STATEMANAGER_PEERS" => Some(r#"{1: "127.0.0.1:8185", 2: "127.0.0.2:8185"}"#.into()),
        "STATEMANAGER_PEER_LISTEN" => Some("127.0.0.1:8185".into()),
        "STATEMANAGER_NODE_ID" => Some("1".into()),
        _ => None,
    };
    let c = load(None, &env).unwrap().config;
    assert_eq!(c.peers.len(), 2, "{:?}", c.peers);
    assert_eq!(c.peers.get(&2).map(String::as_str), Some("127.0.0.2:8185"));
}

#[test]
fn shipped_example_config_is_the_defaults_and_lists_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/statemanager.yaml");
    let loaded = load(Some(&path), &no_env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config, Config::default());
    let text = std::fs::read_to_string(&path).unwrap();
    for key in KEYS {
        assert!(
            text.contains(&format!("{key}:")),
            "example config lacks {key}"
        );
    }
}

#[test]
fn debian_packaged_config_is_the_defaults_with_debian_paths() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/debian/statemanager.yaml");
    let loaded = load(Some(&path), &no_env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let expected = Config {
        data_dir: PathBuf::from("/var/lib/statemanager"),
        log_stderr: true,
        ..Config::default()
    };
    assert_eq!(loaded.config, expected);
    let text = std::fs::read_to_string(&path).unwrap();
    for key in KEYS {
        assert!(
            text.contains(&format!("{key}:")),
            "packaged config lacks {key}"
        );
    }
}

#[test]
fn namespace_keys_as_string_list_and_file() {
    const K: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";
    let c = load_text(&format!("namespace_keys: {K},{K}\n"), &no_env)
        .unwrap()
        .config;
    assert_eq!(c.namespace_keys.len(), 2);
    let c = load_text(&format!("namespace_keys:\n  - {K}\n"), &no_env)
        .unwrap()
        .config;
    assert!(c.keyring().unwrap().is_some());
    let err = load_text("namespace_keys: notakey\n", &no_env).unwrap_err();
    assert!(
        err.starts_with("invalid value for 'namespace_keys' in FILE"),
        "{err}"
    );
    let err = load_text("require_namespace_token: true\n", &no_env).unwrap_err();
    assert!(err.contains("no namespace_keys"), "{err}");

    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("keys");
    std::fs::write(&keyfile, format!("{K}\n")).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!("namespace_keys_file: {}\n", keyfile.display());
    let err = load_text(&text, &no_env).unwrap_err();
    assert!(err.contains("must be 0600"), "{err}");
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load_text(&text, &no_env)
        .unwrap()
        .config
        .keyring()
        .unwrap()
        .is_some());
}

#[test]
fn peers_map_with_integer_or_string_ids() {
    let c = load_text(
        "node_id: 2\npeer_listen: 127.0.0.1:9002\npeers:\n  1: 127.0.0.1:9001\n  \"2\": 127.0.0.1:9002\n",
        &no_env,
    )
    .unwrap()
    .config;
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[&1], "127.0.0.1:9001");
    let err = load_text("peers: [a, b]\n", &no_env).unwrap_err();
    assert!(
        err.starts_with("invalid value for 'peers' in FILE"),
        "{err}"
    );
    let err = load_text("node_id: 3\npeer_listen: x:1\npeers:\n  1: a:1\n", &no_env).unwrap_err();
    assert!(err.contains("not in peers"), "{err}");
}

#[test]
fn timing_relations_are_checked() {
    let err = load_text("heartbeat_interval_ms: 500\n", &no_env).unwrap_err();
    assert!(err.contains("election_timeout_min_ms"), "{err}");
}

#[test]
fn worker_threads_default_to_one_per_core_but_one() {
    let default = load(None, &no_env).unwrap().config;
    let workers: Vec<usize> = [1, 2, 4, 64]
        .into_iter()
        .map(|cores| default.runtime_workers(cores))
        .collect();
    assert_eq!(workers, [1, 1, 3, 63]);
    // Zero cores cannot be reported, but would still get one worker.
    assert_eq!(default.runtime_workers(0), 1);
    let set = load_text("worker_threads: 6\n", &no_env).unwrap().config;
    assert_eq!((set.runtime_workers(2), set.runtime_workers(64)), (6, 6));
}

/// The node options a configuration gives, with a manual clock and a small cache.
fn node_options(config: &Config) -> statemanager_raft::NodeOptions {
    let clock: Arc<dyn Clock> = Arc::new(statemanager_core::ManualClock::new(
        statemanager_core::Timestamp::from_micros(0),
    ));
    let cache = Arc::new(Cache::new(
        statemanager_cache::CacheLimits {
            max_cache_size: 1 << 20,
            max_item_size: 1 << 10,
        },
        clock.clone(),
    ));
    config.node_options(String::new(), None, Default::default(), cache, clock)
}

#[test]
fn write_gather_reaches_the_node_is_bounded_and_zero_turns_it_off() {
    let default = load(None, &no_env).unwrap().config;
    assert_eq!(
        node_options(&default).write_gather,
        Duration::from_millis(3)
    );
    let set = load_text("write_gather_ms: 7\n", &no_env).unwrap().config;
    assert_eq!(node_options(&set).write_gather, Duration::from_millis(7));
    let off = load_text("write_gather_ms: 0\n", &no_env).unwrap().config;
    assert_eq!(node_options(&off).write_gather, Duration::ZERO);
    for bad in ["101", "-1", "two"] {
        let err = load_text(&format!("write_gather_ms: {bad}\n"), &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'write_gather_ms' in FILE"),
            "{err}"
        );
    }
}

#[test]
fn inline_write_bound_reaches_the_node_is_bounded_and_zero_turns_it_off() {
    let default = load(None, &no_env).unwrap().config;
    assert_eq!(
        node_options(&default).inline_write_fsync_bound,
        Duration::from_millis(1)
    );
    let set = load_text("inline_write_max_fsync_us: 250\n", &no_env)
        .unwrap()
        .config;
    assert_eq!(
        node_options(&set).inline_write_fsync_bound,
        Duration::from_micros(250)
    );
    let off = load_text("inline_write_max_fsync_us: 0\n", &no_env)
        .unwrap()
        .config;
    assert_eq!(node_options(&off).inline_write_fsync_bound, Duration::ZERO);
    for bad in ["1000001", "-1", "fast"] {
        let err = load_text(&format!("inline_write_max_fsync_us: {bad}\n"), &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'inline_write_max_fsync_us' in FILE"),
            "{err}"
        );
    }
}

#[test]
fn write_pipeline_reaches_the_node_and_is_bounded() {
    let config = load_text("write_pipeline: 4\n", &no_env).unwrap().config;
    assert_eq!(config.write_pipeline, 4);
    assert_eq!(node_options(&config).write_pipeline, 4);
    assert_eq!(load(None, &no_env).unwrap().config.write_pipeline, 1);
    for bad in ["0", "65", "two"] {
        let err = load_text(&format!("write_pipeline: {bad}\n"), &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'write_pipeline' in FILE"),
            "{err}"
        );
    }
}

#[test]
fn connection_threads_default_to_one_beside_the_workers_on_two_cores_or_more() {
    let default = load(None, &no_env).unwrap().config;
    assert_eq!(default.connection_threads(1), 0, "one core: none");
    assert_eq!(default.connection_threads(2), 1);
    assert_eq!(default.connection_threads(64), 1);
    for (text, want) in [("0", 0), ("3", 3), ("1024", 1024)] {
        let set = load_text(&format!("connection_threads: {text}\n"), &no_env)
            .unwrap()
            .config;
        assert_eq!(set.connection_threads(1), want);
        assert_eq!(set.connection_threads(8), want);
    }
    for bad in ["1025", "-1", "two"] {
        let err = load_text(&format!("connection_threads: {bad}\n"), &no_env).unwrap_err();
        assert!(
            err.starts_with("invalid value for 'connection_threads' in FILE"),
            "{err}"
        );
    }
}

#[test]
fn a_member_of_a_cluster_has_no_connection_thread_unless_one_is_set() {
    let founder = "node_id: 2\npeer_listen: 127.0.0.1:9002\npeers:\n  1: 127.0.0.1:9001\n  2: 127.0.0.1:9002\n";
    let joiner = "node_id: 4\npeer_listen: 127.0.0.1:9004\njoin: true\n";
    for text in [founder, joiner] {
        let member = load_text(text, &no_env).unwrap().config;
        assert_eq!(member.connection_threads(2), 0, "{text}");
        assert_eq!(member.connection_threads(64), 0, "{text}");
        let set = load_text(&format!("{text}connection_threads: 1\n"), &no_env)
            .unwrap()
            .config;
        assert_eq!(set.connection_threads(2), 1, "set, it is kept: {text}");
    }
    let alone = "node_id: 1\npeer_listen: 127.0.0.1:9001\npeers:\n  1: 127.0.0.1:9001\n";
    let alone = load_text(alone, &no_env).unwrap().config;
    assert_eq!(
        alone.connection_threads(2),
        1,
        "peers naming only this node: a single node"
    );
}

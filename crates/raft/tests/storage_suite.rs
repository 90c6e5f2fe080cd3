//! openraft's storage conformance suite against our log store and state machine.

use openraft::testing::log::{StoreBuilder, Suite};
use statemanager_raft::log_store::LogStore;
use statemanager_raft::state_machine::StateMachine;
use statemanager_raft::types::RaftStorageError;
use statemanager_raft::TypeConfig;
use statemanager_storage::LogEngine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("raft")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("snapshots")).expect("mkdir");
        let engine = LogEngine::open(&dir.path().join("raft")).expect("open engine");
        let sm = StateMachine::open(&dir.path().join("snapshots")).expect("open sm");
        Ok((
            dir,
            LogStore::new(engine).expect("the log writer starts"),
            sm,
        ))
    }
}

#[tokio::test]
async fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder).await {
        panic!("storage suite failed: {e}");
    }
}

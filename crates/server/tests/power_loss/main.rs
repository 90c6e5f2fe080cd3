//! Power loss: the data directory lives on a file system that forgets everything not made
//! durable (`statemanager-powercut`: contents by fsync of the file, names by fsync of their
//! directory). Each cut kills the server with SIGKILL and then drops, zeroes, tears or keeps
//! every unsynced change (drawn from a seed printed by the test, so a failure can be
//! replayed). After each cut the node must start by itself and serve every acknowledged store
//! (or a newer one whose outcome was unknown).
//!
//! Besides cuts at moments a load happens to reach, the sweeps (`stop_at_every_change`,
//! `stop_rack_at_every_change`) replay one history again and again, the power going off after
//! its first, second, third… changing request (`Mount::power_off_after`): every stop of a
//! first start, every fifth of a single node's snapshots and purges, every twelfth of a
//! cluster's formation, every fortieth of one node grown into three by `cluster add` and of
//! three shrunk to two by `cluster remove`, every hundredth of a follower's catch-up, and
//! every one of the offline `restore` and `recover` and of `statemanager backup` writing its
//! file. `POWERCUT_STRIDE=1` makes each sweep stop everywhere; `POWERCUT_SEED` replays the
//! offset a run printed.
//!
//! The harness is tested too: a server built to acknowledge before its log fsync, or to skip
//! its directory fsyncs, must be caught losing data.
//!
//! These tests mount FUSE: they need root and /dev/fuse (CI runs as root; .ci/run installs
//! fuse3). They fail, never skip, when either is missing.
//!
//! The modules:
//! - [`harness`]: the ledger of acknowledged stores and the checks against it, loads, the
//!   mount, starting a node until it is ready, the busy configurations;
//! - [`cuts`]: cuts at moments a load reaches, on one node and on a cluster, and the harness's
//!   own tests;
//! - [`sweep`]: one node's history stopped at every change, the sweep's plan and report, and
//!   an offline command stopped at a change;
//! - [`rack`]: a 3-node rack on one mount, its histories (formation, a follower's catch-up)
//!   stopped at every change;
//! - [`membership`]: the rack grown by `cluster add` and shrunk by `cluster remove`, stopped at
//!   every change;
//! - [`restore`]: `statemanager restore` and `statemanager backup` stopped at every change;
//! - [`recover`]: `statemanager recover` on a lost quorum's survivor, stopped at every change.

#[path = "../common/mod.rs"]
mod common;

mod cuts;
mod harness;
mod membership;
mod rack;
mod recover;
mod restore;
mod sweep;

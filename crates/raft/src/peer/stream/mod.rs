//! The peer stream: the hot node-to-node RPCs over persistent framed connections.
//!
//! Every batch of stores costs about five peer RPCs (the hand-over from a follower, an append
//! to each follower, and the commit notice openraft sends after it). Over HTTP each costs a
//! request head to build and parse, a trip through reqwest's and axum's service layers, and
//! on the client a hop to hyper's connection task and back; profiles put that at a fifth of
//! a leader's CPU. The stream carries the same postcard bodies without any of it: the task
//! that makes a call writes one frame and reads one frame on a connection it owns for the
//! duration of the call.
//!
//! It runs on the peer port beside HTTP, behind the same TLS and credentials:
//!
//! ```text
//! client                                   server (peer port)
//!   TCP connect (then TLS with the node's certificate, when peer_tls is configured)
//!   "SMRPC1\r\n" (the preface: no HTTP request starts like this)
//!   frame: Hello { version, authorization }  ─▶  version, cluster secret (constant time)
//!                                            ◀─  frame: Result<(), String> (Err: closed)
//!   frame: [kind u8][cluster id: Option<String>][CallStamp][postcard request]
//!                                            ◀─  frame: [0][AnswerStamp][postcard answer]
//!                                                or [1][refusal]
//!   … one call at a time per connection, for as long as both keep it
//! ```
//!
//! The stamps (version 2, see [`crate::cluster_time`]) carry cluster time and the clock
//! readings the NTP-style offset estimate needs. A version 1 hello is still accepted: on
//! such a connection calls and answers have no stamps (as before), and the peer's clock is
//! simply not measured. This node always speaks version 2, so a version 1 node cannot be
//! called by it over the stream (mixed versions are not supported; see
//! `docs/operations.md`).
//!
//! A frame is a `u32` little-endian length and that many bytes (see [`frame`]). Answers are
//! exactly the bodies the HTTP routes of `peer_server` answer (`/raft/append`, `/raft/vote`,
//! `/raft/propose`, `/raft/read_index`), which stay for snapshots, `elect`, administration,
//! and peers that do not speak the stream: a node whose preface is answered with HTTP talks
//! HTTP to that peer from then on.
//!
//! The shared cache's forwarded `get_data`/`set_data` (`CacheGet`, `CacheSet`; see
//! `cache_peers`) travel here too, and have no HTTP route: a peer that speaks HTTP only is
//! treated as not answering them.

pub mod client;
pub mod frame;
pub mod server;

use serde::{Deserialize, Serialize};

/// The first bytes of a stream connection.
pub const PREFACE: &[u8; 8] = b"SMRPC1\r\n";
/// The stream protocol version, sent in [`Hello`]: 2 adds the clock stamps.
pub const VERSION: u32 = 2;
/// The oldest version a server still accepts (calls and answers without stamps).
pub const MIN_VERSION: u32 = 1;
/// Largest hello frame accepted (before the peer is authenticated).
pub const MAX_HELLO: usize = 4096;

/// The first frame of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`VERSION`].
    pub version: u32,
    /// What an HTTP peer request carries as `Authorization` (`Bearer <cluster_secret>`).
    pub authorization: Option<String>,
}

/// The RPCs the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// openraft's AppendEntries.
    Append = 1,
    /// openraft's RequestVote.
    Vote = 2,
    /// A follower hands a batch of operations to the leader.
    Propose = 3,
    /// A follower asks the leader for a read index.
    ReadIndex = 4,
    /// A pre-vote: would the receiver vote for the caller in the next term (see `election`)?
    PreVote = 5,
    /// A follower asks the leader for a read index, its request counting as its
    /// acknowledgment (see `follower_read`). A node that does not know it refuses it, and the
    /// follower asks with [`Kind::ReadIndex`] instead.
    FollowerRead = 6,
    /// A leader asks one follower whether its vote still names this leader, for the
    /// leader's own reads (see `leader_read`). A node that does not know it refuses it, and
    /// the leader runs a heartbeat round instead.
    LeaderRead = 7,
    /// A `get_data` forwarded to the key's owner (see `cache_peers`).
    CacheGet = 20,
    /// A `set_data` forwarded to the key's owner.
    CacheSet = 21,
}

impl Kind {
    /// The kind a request frame starts with.
    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Append),
            2 => Some(Kind::Vote),
            3 => Some(Kind::Propose),
            4 => Some(Kind::ReadIndex),
            5 => Some(Kind::PreVote),
            6 => Some(Kind::FollowerRead),
            7 => Some(Kind::LeaderRead),
            20 => Some(Kind::CacheGet),
            21 => Some(Kind::CacheSet),
            _ => None,
        }
    }
}

/// First byte of an answer: the call was handled; its answer follows.
pub const ANSWERED: u8 = 0;
/// First byte of an answer: the call was refused (version, cluster id, undecodable); the
/// reason follows as a postcard string.
pub const REFUSED: u8 = 1;

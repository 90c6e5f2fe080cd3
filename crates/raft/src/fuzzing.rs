//! Fuzz harness: the body of the `peer_decode` cargo-fuzz target (`fuzz/fuzz_targets/`), kept
//! here so the target and the corpus replay test (`tests/fuzz_corpus.rs`, run by plain
//! `cargo test`) do exactly the same thing.
//!
//! The input is what a peer stream server reads after the preface: frames, the first a hello
//! and the rest requests. Every frame is read with the stream's own frame reader, split and
//! decoded with the server's own functions, and also decoded as each answer a client decodes
//! and as the HTTP snapshot route's body. None of it may panic, and whatever decodes must
//! re-encode canonically (encode ∘ decode is the identity on encoder output), which checks the
//! hand-written decoders (`arc_str`, `SharedBatch`) against their encoders.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use openraft::raft::{AppendEntriesResponse, SnapshotResponse, VoteResponse};
use openraft::EntryPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use statemanager_core::{Batch, Limits, State, Stored, Timestamp};

use crate::peer::auth::ClusterSecret;
use crate::peer::stream::client::{open_answer, read_hello_answer};
use crate::peer::stream::frame;
use crate::peer::stream::server::{decode_call, read_hello, split_request, split_stamp, Call};
use crate::peer::stream::MAX_HELLO;
use crate::types::{Entry, TypeConfig};
use crate::NodeError;

/// Largest request frame the harness reads (the server's limit is 512 MiB; fuzz inputs are
/// small, and a length over the input's own is an early end either way).
const MAX_FRAME: usize = 1 << 20;

/// The "now" of a batch the harness makes from handed-over operations (2026-12-01).
const FUZZ_NOW_MICROS: u64 = 1_796_083_200_000_000;

/// Runs a future that never waits (reading from a byte slice is always ready).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from a byte slice waited"),
    }
}

/// Decodes `bytes` as `T`; when it decodes, re-encoding must be stable.
fn decodes_canonically<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let value: T = postcard::from_bytes(bytes).ok()?;
    let once = postcard::to_allocvec(&value).expect("a decoded value encodes");
    let again: T = postcard::from_bytes(&once).expect("an encoded value decodes");
    let twice = postcard::to_allocvec(&again).expect("a decoded value encodes");
    assert_eq!(once, twice, "encode(decode(x)) is not stable");
    Some(value)
}

/// The harness: see the module documentation.
pub fn peer_decode(data: &[u8]) {
    let secret = ClusterSecret::new("fuzz-cluster-secret").expect("a valid secret");
    let mut input = data;
    let mut first = true;
    // Each frame consumes at least its 4-byte length, so this ends; the bound is a backstop.
    for _ in 0..=data.len() / frame::LEN_BYTES {
        let limit = if first { MAX_HELLO } else { MAX_FRAME };
        let payload = match ready(frame::read(&mut input, limit)) {
            Ok(payload) => payload,
            Err(_) => return,
        };
        assert!(payload.len() <= limit, "a frame over the limit was read");
        if first {
            if let Ok(hello) = read_hello(&payload) {
                let _ = secret.admits(hello.authorization.as_deref());
            }
            first = false;
        } else if let Ok((kind, _cluster_id, body)) = split_request(&payload) {
            // Version 2 carries a clock stamp before the request; version 1 does not.
            let stamped = split_stamp(body).ok().map(|(_, rest)| rest);
            for body in stamped.into_iter().chain([body]) {
                decode_one(kind, body);
            }
        }
        answers(&payload);
    }
}

/// Decodes one request body of `kind` and applies what it carries.
fn decode_one(kind: crate::peer::stream::Kind, body: &[u8]) {
    let Ok(call) = decode_call(kind, body) else {
        return;
    };
    match call {
        Call::Append(rpc) => {
            decodes_canonically::<openraft::raft::AppendEntriesRequest<TypeConfig>>(body);
            apply_entries(&rpc.entries);
        }
        Call::Vote(_) => {
            decodes_canonically::<openraft::raft::VoteRequest<TypeConfig>>(body);
        }
        Call::Propose(ops) => {
            decodes_canonically::<Vec<statemanager_core::Op>>(body);
            let batch = Batch {
                now: Timestamp::from_micros(FUZZ_NOW_MICROS),
                limits: Limits::default(),
                ops,
            };
            State::new().apply(&batch);
        }
        Call::ReadIndex => {}
        Call::FollowerRead(_) => {
            decodes_canonically::<crate::follower_read::FollowerReadRequest>(body);
        }
        Call::LeaderRead(request) => {
            decodes_canonically::<crate::leader_read::LeaderReadRequest>(body);
            let _ = crate::leader_read::vouches(2, (1, 1), &request);
        }
        Call::CacheGet(_) => {
            decodes_canonically::<crate::peer::cache_peers::CacheGetRequest>(body);
        }
        Call::CacheSet(_) => {
            decodes_canonically::<crate::peer::cache_peers::CacheSetRequest>(body);
        }
        Call::PreVote(request) => {
            decodes_canonically::<crate::election::PreVoteRequest>(body);
            let view = crate::election::VoterView {
                leading: false,
                term: 1,
                last_log_id: None,
                silent_for: std::time::Duration::from_secs(1),
                lease: std::time::Duration::ZERO,
            };
            let _ = crate::election::grant_pre_vote(&view, &request);
        }
    }
}

/// Applies the batches of decoded entries to a fresh state, as a follower's state machine
/// would: a batch from a peer was never validated by this node, and applying must not panic
/// whatever it holds.
fn apply_entries(entries: &[Entry]) {
    let mut state = State::new();
    for entry in entries {
        if let EntryPayload::Normal(batch) = &entry.payload {
            let outcomes = state.apply(batch);
            assert_eq!(outcomes.len(), batch.ops.len(), "one outcome per operation");
        }
    }
}

/// Decodes `payload` as everything a node reads from a peer's answer or an HTTP route body.
fn answers(payload: &[u8]) {
    let _ = read_hello_answer(payload);
    let Ok(body) = open_answer(payload, "fuzz") else {
        return;
    };
    if let Ok((_, rest)) = crate::peer::stream::client::split_answer(&body) {
        answer_bodies(rest);
    }
    answer_bodies(&body);
}

/// Decodes an answer's body as every answer type.
fn answer_bodies(body: &[u8]) {
    decodes_canonically::<Result<AppendEntriesResponse<TypeConfig>, String>>(body);
    decodes_canonically::<Result<VoteResponse<TypeConfig>, String>>(body);
    decodes_canonically::<Result<Vec<Result<Stored, NodeError>>, NodeError>>(body);
    decodes_canonically::<Result<u64, String>>(body);
    decodes_canonically::<bool>(body);
    decodes_canonically::<Result<crate::follower_read::FollowerReadAnswer, String>>(body);
    decodes_canonically::<Result<SnapshotResponse<TypeConfig>, String>>(body);
    if let crate::peer::snapshot_transfer::Split::Head(head, _) =
        crate::peer::snapshot_transfer::split(body)
    {
        decodes_canonically::<(crate::types::Vote, crate::types::SnapshotMeta)>(head);
    }
}

//! Replays the committed fuzz corpus of `peer_decode` (`fuzz/corpus/peer_decode/`) through the
//! same harness the cargo-fuzz target runs, so every input the fuzzer kept (and every crash it
//! found) is checked by a plain `cargo test`; and checks the seeds the code makes.

#[path = "../../../fuzz/corpus_replay.rs"]
mod corpus_replay;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, EntryPayload, Membership};
use serde::Serialize;
use statemanager_core::{
    Batch, DomainError, ItemId, Key, Limits, Namespace, Op, StoreOp, Stored, Timestamp,
};
use statemanager_raft::cluster_time::{AnswerStamp, CallStamp};
use statemanager_raft::fuzzing::peer_decode;
use statemanager_raft::peer_stream::server::{decode_call, split_request, split_stamp};
use statemanager_raft::peer_stream::{Hello, Kind, ANSWERED, REFUSED, VERSION};
use statemanager_raft::types::{Entry, LogId, SharedBatch, Vote};
use statemanager_raft::{NodeError, TypeConfig};

#[test]
fn peer_decode_corpus() {
    corpus_replay::replay("peer_decode", peer_decode);
}

/// A frame: the `u32` little-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    [&len.to_le_bytes()[..], payload].concat()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

/// A request frame as `StreamPool::call` sends it: `[kind][cluster id][stamp][request]`.
fn request<T: Serialize>(kind: Kind, body: &T) -> Vec<u8> {
    let cluster_id = Some("c0ffee00-1234-4abc-8def-000000000001".to_string());
    let stamp = CallStamp {
        from: 1,
        seen: 1_796_083_200_000_000,
        confirmed: 1_796_083_199_900_000,
        offsets: vec![(2, 1_500), (3, -300_000)],
    };
    frame(
        &[
            &[kind as u8][..],
            &encode(&cluster_id),
            &encode(&stamp),
            &encode(body),
        ]
        .concat(),
    )
}

fn answer<T: Serialize>(value: &T) -> Vec<u8> {
    let stamp = AnswerStamp {
        received_at: 1_796_083_200_001_000,
        sent_at: 1_796_083_200_001_500,
        seen: 1_796_083_200_000_000,
        confirmed: 1_796_083_199_900_000,
    };
    frame(&[&[ANSWERED][..], &encode(&stamp), &encode(value)].concat())
}

fn hello(version: u32) -> Vec<u8> {
    frame(&encode(&Hello {
        version,
        authorization: Some("Bearer fuzz-cluster-secret".into()),
    }))
}

/// A stream as a server reads it: a hello, then `requests` (request frames). Each request
/// must be one the server decodes, so the seed reaches the decoders.
fn stream_of(requests: &[Vec<u8>]) -> Vec<u8> {
    for frame in requests {
        let (kind, cluster_id, body) = split_request(&frame[4..]).unwrap();
        assert!(cluster_id.is_some());
        let (_, body) = split_stamp(body).unwrap();
        decode_call(kind, body).unwrap();
    }
    [&[hello(VERSION)][..], requests].concat().concat()
}

fn store(key: &str, data: &str, timestamp: Option<f64>) -> Op {
    Op::Store(
        StoreOp::new(
            "PLUGIN#check_disk",
            key,
            data,
            300.0,
            timestamp,
            &Limits::default(),
        )
        .unwrap(),
    )
}

fn log_id(index: u64) -> LogId {
    LogId::new(statemanager_raft::types::leader_in(2, 1), index)
}

/// Seeds: a whole stream as a server reads it (hello, then an append carrying a batch, a
/// blank and a membership entry, a vote, a hand-over and a read index); the answers a client
/// reads; a hello of another version.
#[test]
fn peer_decode_seeds() {
    let ops = vec![
        store("last", "{\"used\":42}", Some(1_796_083_100.0)),
        store("now", "ünïcødé", None),
        Op::Delete(ItemId {
            namespace: Namespace::new("PLUGIN#check_disk").unwrap(),
            key: Key::new("old").unwrap(),
        }),
    ];
    let batch = Batch {
        now: Timestamp::from_micros(1_796_083_200_000_000),
        limits: Limits::default(),
        ops: ops.clone(),
    };
    let members: BTreeSet<u64> = [1, 2, 3].into();
    let nodes: BTreeMap<u64, BasicNode> = members
        .iter()
        .map(|&id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    let membership = Membership::new(vec![members], nodes).unwrap();
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(10)),
        entries: vec![
            Entry {
                log_id: log_id(11),
                payload: EntryPayload::Normal(SharedBatch(Arc::new(batch))),
            },
            Entry {
                log_id: log_id(12),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(13),
                payload: EntryPayload::Membership(membership),
            },
        ],
        leader_commit: Some(log_id(10)),
    };
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(3, 2), Some(log_id(13)));
    let requests = [
        request(Kind::Append, &append),
        request(Kind::Vote, &vote),
        request(Kind::Propose, &ops),
        request(Kind::ReadIndex, &()),
    ];
    let stream = stream_of(&requests);

    type Raft<T> = Result<T, String>;
    let stored = Stored {
        timestamp: Timestamp::from_micros(1_796_083_100_000_000),
        expires_at: Timestamp::from_micros(1_796_083_400_000_000),
    };
    let outcomes: Result<Vec<Result<Stored, NodeError>>, NodeError> = Ok(vec![
        Ok(stored),
        Err(NodeError::Domain(DomainError::NotFound)),
    ]);
    let answers = [
        frame(&encode(&Ok::<(), String>(()))),
        answer(&Raft::Ok(AppendEntriesResponse::<TypeConfig>::Success)),
        answer(&Raft::Ok(VoteResponse::<TypeConfig>::new(
            Vote::new(3, 2),
            Some(log_id(13)),
            true,
        ))),
        answer(&outcomes),
        answer(&Ok::<u64, String>(13)),
        frame(&[&[REFUSED][..], &encode(&"another cluster".to_string())].concat()),
    ]
    .concat();
    let seeds = vec![
        ("stream".to_string(), stream),
        ("answers".to_string(), answers),
        ("hello-of-another-version".to_string(), hello(VERSION + 1)),
    ];
    corpus_replay::check_seeds("peer_decode", seeds, peer_decode);
}

/// Seeds of the shared cache's calls: a stream (hello, a forwarded `get_data` and
/// `set_data`) and their answers (a hit, a refusal for size, a node without a cache).
#[test]
fn peer_decode_cache_seeds() {
    use statemanager_raft::cache_peers::{
        CacheGetAnswer, CacheGetRequest, CacheSetAnswer, CacheSetRequest,
    };
    let get = CacheGetRequest {
        namespace: "PLUGIN#check_cache".into(),
        key: "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea".into(),
        wait_secs: 30,
        wait_left_ms: 10_000,
        skipped: vec![3],
    };
    let set = CacheSetRequest {
        namespace: "PLUGIN#check_cache".into(),
        key: "ünïcødé".into(),
        data: "{\"value\": 42}".into(),
        ttl_secs: 900,
        skipped: Vec::new(),
    };
    let requests = [request(Kind::CacheGet, &get), request(Kind::CacheSet, &set)];
    let stream = stream_of(&requests);
    let answers = [
        frame(&encode(&Ok::<(), String>(()))),
        answer(&Ok::<CacheGetAnswer, String>(CacheGetAnswer {
            data: Some("{\"value\": 42}".into()),
            lock: false,
            expiry: 1_796_084_100,
        })),
        answer(&Ok::<CacheSetAnswer, String>(Err((11 << 20, 10 << 20)))),
        answer(&Err::<CacheSetAnswer, String>(
            "this node has no cache".into(),
        )),
    ]
    .concat();
    let seeds = vec![
        ("cache-stream".to_string(), stream),
        ("cache-answers".to_string(), answers),
    ];
    corpus_replay::check_seeds("peer_decode", seeds, peer_decode);
}

/// Seeds of a follower's read: a stream with its request, and the answers (without a round,
/// after one, a refusal).
#[test]
fn peer_decode_follower_read_seeds() {
    use statemanager_raft::follower_read::{FollowerReadAnswer, FollowerReadRequest};
    let ask = FollowerReadRequest {
        term: 7,
        follower: 2,
    };
    let requests = [request(Kind::FollowerRead, &ask)];
    let stream = stream_of(&requests);
    let answers = [
        frame(&encode(&Ok::<(), String>(()))),
        answer(&Ok::<FollowerReadAnswer, String>(FollowerReadAnswer {
            index: 120,
            time: 1_796_083_200_000_000,
            round: false,
        })),
        answer(&Ok::<FollowerReadAnswer, String>(FollowerReadAnswer {
            index: 121,
            time: 1_796_083_200_000_001,
            round: true,
        })),
        answer(&Err::<FollowerReadAnswer, String>(
            "leadership could not be confirmed in time".into(),
        )),
    ]
    .concat();
    let seeds = vec![
        ("follower-read-stream".to_string(), stream),
        ("follower-read-answers".to_string(), answers),
    ];
    corpus_replay::check_seeds("peer_decode", seeds, peer_decode);
}

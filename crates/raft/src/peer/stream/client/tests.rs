//! Tests of the peer stream's client side.

use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What the fake peer does with each connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Answers like an HTTP server that does not know the preface.
    Http,
    /// Refuses the hello.
    RefuseHello,
    /// Answers `calls` calls with their index, then closes the connection.
    Answer { calls: usize },
    /// Reads a call and closes without answering.
    Vanish,
    /// A node of a version without `FollowerRead` and `LeaderRead`: refuses them as unknown
    /// calls (counting the refusals), and answers `ReadIndex` with the index 42.
    WithoutFollowerRead { refused: &'static AtomicUsize },
}

/// An address on which nobody listens (a port just freed).
async fn nobody_listening() -> String {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    closed.local_addr().unwrap().to_string()
}

/// A fake peer on a free port; counts the connections it accepted.
async fn fake_peer(behaviour: Peer) -> (String, Arc<AtomicUsize>) {
    crate::peer::test_peer::counting_listener(move |mut conn| async move {
        let mut preface = [0u8; 8];
        if conn.read_exact(&mut preface).await.is_err() {
            return;
        }
        if let Peer::Http = behaviour {
            let _ = conn
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let hello = frame::read(&mut conn, MAX_HELLO).await.unwrap();
        let hello: Hello = postcard::from_bytes(&hello).unwrap();
        assert_eq!(hello.version, VERSION);
        let verdict: Result<(), String> = match behaviour {
            Peer::RefuseHello => Err("no".into()),
            _ => Ok(()),
        };
        let mut f = FrameBuf::with_capacity(16);
        f.encode(&verdict).unwrap();
        frame::write(&mut conn, &f.finish().unwrap()).await.unwrap();
        if let Peer::WithoutFollowerRead { refused } = behaviour {
            while let Ok(request) = frame::read(&mut conn, 1 << 20).await {
                let mut f = FrameBuf::with_capacity(64);
                if request.first() == Some(&(Kind::ReadIndex as u8)) {
                    f.extend(&[ANSWERED]);
                    f.encode(&AnswerStamp::default()).unwrap();
                    f.encode(&Ok::<u64, String>(42)).unwrap();
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                    f.extend(&[REFUSED]);
                    f.encode(&format!("unknown call {:?}", request.first()))
                        .unwrap();
                }
                frame::write(&mut conn, &f.finish().unwrap()).await.unwrap();
            }
            return;
        }
        let calls = match behaviour {
            Peer::Answer { calls } => calls,
            Peer::Vanish => {
                let _ = frame::read(&mut conn, 1 << 20).await;
                return;
            }
            _ => return,
        };
        for n in 0..calls {
            if frame::read(&mut conn, 1 << 20).await.is_err() {
                return;
            }
            let mut f = FrameBuf::with_capacity(16);
            f.extend(&[ANSWERED]);
            f.encode(&AnswerStamp::default()).unwrap();
            f.encode(&(n as u64)).unwrap();
            frame::write(&mut conn, &f.finish().unwrap()).await.unwrap();
        }
    })
    .await
}

fn pool() -> StreamPool {
    let clock = Arc::new(statemanager_core::ManualClock::default());
    let time = Arc::new(ClusterTime::new(1, clock, Duration::from_millis(500)));
    StreamPool::new(
        Arc::new(RwLock::new(None)),
        &PeerCredentials::default(),
        time,
    )
    .unwrap()
}

async fn call(pool: &StreamPool, addr: &str) -> Result<u64, CallError> {
    pool.call(addr, Some(2), Kind::ReadIndex, &(), Duration::from_secs(5))
        .await
        .map(|body| postcard::from_bytes(&body).unwrap())
}

#[tokio::test]
async fn connections_are_reused_and_replaced_when_the_peer_closed_them() {
    let (addr, accepted) = fake_peer(Peer::Answer { calls: 2 }).await;
    let pool = pool();
    assert_eq!(call(&pool, &addr).await, Ok(0));
    assert_eq!(call(&pool, &addr).await, Ok(1), "same connection");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The peer closed it after two calls: the pool notices and opens a new one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(call(&pool, &addr).await, Ok(0));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn each_failure_says_whether_the_peer_may_have_acted() {
    let pool = pool();
    // Nobody listening: not sent.
    let nowhere = nobody_listening().await;
    assert!(matches!(
        call(&pool, &nowhere).await,
        Err(CallError::NotSent(_))
    ));
    // A refused hello: refused, nothing done.
    let (addr, _) = fake_peer(Peer::RefuseHello).await;
    assert_eq!(
        call(&pool, &addr).await,
        Err(CallError::Refused("no".into()))
    );
    // Read and never answered: lost (it may have acted).
    let (addr, _) = fake_peer(Peer::Vanish).await;
    assert!(matches!(call(&pool, &addr).await, Err(CallError::Lost(_))));
}

#[tokio::test]
async fn a_peer_that_speaks_http_only_is_remembered() {
    let (addr, accepted) = fake_peer(Peer::Http).await;
    let pool = pool();
    assert_eq!(call(&pool, &addr).await, Err(CallError::HttpOnly));
    assert_eq!(call(&pool, &addr).await, Err(CallError::HttpOnly));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "not asked twice");
}

#[tokio::test]
async fn a_failure_keeps_the_io_error_behind_it_as_its_source() {
    let pool = pool();
    let nowhere = nobody_listening().await;
    let failure = call(&pool, &nowhere).await.expect_err("nobody listens");
    assert!(failure
        .to_string()
        .starts_with(&format!("not sent: cannot connect to {nowhere}: ")));
    let reason = std::error::Error::source(&failure).expect("the reason");
    let io = reason.source().expect("the I/O error behind it");
    assert_eq!(
        io.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

/// A call made on another runtime (as from one of the server's connection threads) opens
/// its connection on the pool's runtime: the pooled connection still serves the pool's
/// runtime after the other one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_from_another_runtime_outlives_it() {
    let (addr, accepted) = fake_peer(Peer::Answer { calls: 2 }).await;
    let pool = Arc::new(pool());
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (on_other, at) = (pool.clone(), addr.clone());
    let first = tokio::task::spawn_blocking(move || {
        // `other` ends with this closure.
        other.block_on(async move { call(&on_other, &at).await })
    })
    .await
    .unwrap();
    assert_eq!(first, Ok(0));
    assert_eq!(
        call(&pool, &addr).await,
        Ok(1),
        "the same connection, though the runtime that asked for it is gone"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A network of no cluster, without credentials, for the fake peers.
fn network() -> crate::peer::network::PeerNetwork {
    let clock = Arc::new(statemanager_core::ManualClock::default());
    let time = Arc::new(ClusterTime::new(1, clock, Duration::from_millis(500)));
    crate::peer::network::PeerNetwork::new(
        Arc::new(RwLock::new(None)),
        PeerCredentials::default(),
        time,
    )
    .unwrap()
}

/// A leader of an older version, which does not know `FollowerRead`, is asked for a read
/// index the old way; that answer has no time of its own (its stamp brought it). Having
/// refused once, it is asked the old way at once on the next reads (for a minute), not
/// asked in vain on every one.
#[tokio::test]
async fn a_follower_read_falls_back_to_a_read_index_on_an_older_leader() {
    let refused: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let (addr, accepted) = fake_peer(Peer::WithoutFollowerRead { refused }).await;
    let network = network();
    let request = crate::follower_read::FollowerReadRequest {
        term: 3,
        follower: 1,
    };
    for read in 0..3 {
        let answer = network
            .follower_read(&addr, 2, &request, Duration::from_secs(5))
            .await;
        let answer = answer.unwrap();
        assert_eq!(
            (answer.index, answer.time, answer.round),
            (42, 0, true),
            "read {read}"
        );
    }
    assert_eq!(refused.load(Ordering::SeqCst), 1, "FollowerRead asked once");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for every call"
    );
}

/// A follower of an older version refuses `LeaderRead`: the leader gets an error (it runs
/// a heartbeat round) and marks the follower, so that it does not ask it again for a
/// minute (`leader_read::choose` passes over it).
#[tokio::test]
async fn a_follower_that_refuses_leader_read_is_marked() {
    let refused: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let (addr, _) = fake_peer(Peer::WithoutFollowerRead { refused }).await;
    let network = network();
    assert!(!network.leader_read_refusals().is_marked(&addr));
    let request = crate::leader_read::LeaderReadRequest {
        term: 3,
        leader: 1,
        follower: 2,
    };
    let answer = network
        .leader_read(&addr, 2, &request, Duration::from_secs(5))
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(refused.load(Ordering::SeqCst), 1);
    assert!(network.leader_read_refusals().is_marked(&addr));
    // A follower that is slow or down is not marked: it may vouch next time.
    let down = nobody_listening().await;
    let answer = network
        .leader_read(&down, 3, &request, Duration::from_secs(5))
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert!(!network.leader_read_refusals().is_marked(&down));
}

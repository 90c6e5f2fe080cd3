//! A leader's round with one follower's word (see [`crate::leader_read`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{leadership_unconfirmed, stopping, Reader};
use crate::error::with_sources;
use crate::follower_read::LeaderView;
use crate::leader_read::{LeaderReadRequest, VOUCH_TIMEOUT};
use crate::NodeError;

/// The follower a leader asks first for its reads (see [`crate::leader_read`]): the one
/// that vouched last, or the next after one that did not.
#[derive(Debug, Default)]
pub(super) struct AskedFollower(AtomicU64);

impl Reader {
    /// A leader's round with one follower's word (see [`crate::leader_read`]): the follower
    /// the rule allows, and that has not refused the call lately (an older version: see
    /// [`crate::peer::marks`]), is asked, and once it vouches the leader waits until it has applied
    /// its commit index. `None`: no follower may be asked or the one asked did not vouch; the
    /// caller runs openraft's round. A Raft core that does not answer within the round's
    /// timeout ends the round with an error (a round of openraft's would wait for the same
    /// core).
    pub(super) async fn read_vouched_by_one_follower(&self) -> Option<Result<(), NodeError>> {
        let Reader {
            raft,
            network,
            asked,
            timeout,
            ..
        } = self;
        let timeout = *timeout;
        let from = asked.0.load(Ordering::Relaxed);
        let refused_lately = network.leader_read_refusals();
        let chosen = tokio::time::timeout(
            timeout,
            raft.with_raft_state(move |state| {
                let view = LeaderView::of(state);
                let membership = state.membership_state.effective().membership();
                let may_ask =
                    |id| crate::leader_read::not_refused_lately(membership, &refused_lately, id);
                let (follower, index) = crate::leader_read::choose(&view, from, may_ask)?;
                let node = membership.get_node(&follower)?;
                let request = LeaderReadRequest {
                    term: view.vote.0,
                    leader: view.vote.1,
                    follower,
                };
                Some((follower, index, request, node.addr.clone()))
            }),
        )
        .await;
        let (follower, index, request, addr) = match chosen {
            Ok(Ok(Some(chosen))) => chosen,
            Ok(Ok(None)) => return None,
            Ok(Err(f)) => return Some(Err(stopping(f))),
            Err(_) => return Some(Err(leadership_unconfirmed(timeout))),
        };
        let vouched = network
            .leader_read(&addr, follower, &request, VOUCH_TIMEOUT.min(timeout))
            .await;
        if !matches!(vouched, Ok(true)) {
            tracing::debug!(
                follower,
                answer = ?vouched.map_err(|e| with_sources(&e)),
                "the follower asked did not vouch for the leader's reads; running a round"
            );
            asked.0.store(follower.wrapping_add(1), Ordering::Relaxed);
            metrics::counter!("statemanager_leader_read_rounds_total", "vouched" => "no")
                .increment(1);
            return None;
        }
        asked.0.store(follower, Ordering::Relaxed);
        metrics::counter!("statemanager_leader_read_rounds_total", "vouched" => "yes").increment(1);
        let applied = self.applied_at_least(index, "leader read").await;
        Some(applied.map_err(|_| {
            NodeError::Unavailable(
                format!(
                    "this node did not apply its commit index within {} ms",
                    timeout.as_millis()
                )
                .into(),
            )
        }))
    }
}

//! The vote this node answers by, readable without a message to the Raft core.
//!
//! A read's check that a follower still follows its leader (see [`crate::follower_read`] and
//! [`crate::leader_read`]) must see every vote the node may have answered by: a later
//! leader counts this node's vote, or its acknowledgment of an append, only once it has
//! answered. openraft runs `save_vote` to its end before anything that depends on the new
//! vote leaves the node (a vote's or an append's answer waits for the save; a candidate's
//! vote requests are sent by the command after the save), so a slot set when `save_vote`
//! begins holds, at any moment, a vote at least as new as any the node has answered by. It
//! may be newer (a save under way): the check then refuses, which only costs the read a
//! forwarded request or a heartbeat round. Asking the Raft core the same question costs a
//! message to it and its metrics' publication, on the thread that serves the reads.

use std::sync::Mutex;

use crate::types::{NodeId, Vote};

/// The newest vote handed to the log store to save (its term and the node it names), or
/// the one read at start; `None` before either.
#[derive(Debug, Default)]
pub struct SavedVote(Mutex<Option<(u64, NodeId)>>);

impl SavedVote {
    /// The vote: term and the node it names.
    pub fn get(&self) -> Option<(u64, NodeId)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A vote about to be saved.
    pub(crate) fn saving(&self, vote: &Vote) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(term_and_node(vote));
    }

    /// The vote read at start, unless one is being saved already.
    pub(crate) fn read(&self, vote: &Vote) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(term_and_node(vote));
    }
}

fn term_and_node(vote: &Vote) -> (u64, NodeId) {
    (vote.leader_id.term, vote.leader_id.node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(term: u64, node: NodeId) -> Vote {
        Vote::new(term, node)
    }

    #[test]
    fn a_vote_being_saved_replaces_any_and_one_read_at_start_fills_only_an_empty_slot() {
        let slot = SavedVote::default();
        assert_eq!(slot.get(), None);
        slot.read(&vote(3, 1));
        assert_eq!(slot.get(), Some((3, 1)));
        slot.saving(&vote(4, 2));
        assert_eq!(slot.get(), Some((4, 2)));
        slot.read(&vote(3, 1));
        assert_eq!(slot.get(), Some((4, 2)), "a read never moves the slot back");
    }
}

//! The cluster id: which cluster a node belongs to, so that a node of another cluster (or a
//! stale member of a rebuilt one) is refused by its peers.
//!
//! It is derived once, at formation, from the founding members (so every node that forms the
//! cluster from the same `peers` agrees), stored in the log engine's metadata, carried in every
//! peer call, and checked by every peer (see `Node::admit_peer`). A joining node takes it from
//! the first leader that contacts it.

use std::sync::{Arc, RwLock};

use crate::types::NodeId;

/// The metadata key the cluster id is stored under.
pub(crate) const META_CLUSTER_ID: &str = "cluster-id";

/// This node's cluster id, shared by the network (which sends it) and the peer server (which
/// checks it). `None` only on a node that waits to join and has not heard from a leader.
pub type ClusterId = Arc<RwLock<Option<String>>>;

/// Reads a cluster id cell.
pub fn cluster_id_of(cell: &ClusterId) -> Option<String> {
    cell.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A cluster id from the members it was formed with (FNV-1a over `id=addr` pairs, sorted).
pub(crate) fn derive_cluster_id(members: &[(NodeId, String)]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in sorted {
        for byte in format!("{id}={addr};").bytes() {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Why a peer's call was refused by the cluster id check (see `Node::admit_peer`).
#[derive(Debug, thiserror::Error)]
pub enum ClusterRefusal {
    /// The peer belongs to another cluster.
    #[error("peer belongs to cluster {theirs}, this node to cluster {ours}")]
    Other {
        /// The peer's cluster id.
        theirs: String,
        /// This node's.
        ours: String,
    },
    /// The peer sent none, and this node has one.
    #[error("peer sent no cluster id; this node belongs to cluster {ours}")]
    Missing {
        /// This node's cluster id.
        ours: String,
    },
    /// A joining node could not store the id it was sent.
    #[error("storing the cluster id: {0}")]
    Store(#[source] statemanager_storage::StorageError),
}

/// What a node does with the cluster id a peer sent, given its own (see [`admission`]).
#[derive(Debug)]
pub enum Admission<'a> {
    /// The peer belongs to this node's cluster (or neither has an id yet).
    Admit,
    /// This node waits to join and has no id: it adopts (and stores) the peer's.
    Adopt(&'a str),
    /// The peer belongs elsewhere, or sent no id to a node that has one.
    Refuse(ClusterRefusal),
}

/// The rule of a peer's admission, decided from the two ids alone: the same id is admitted,
/// a node without one adopts the first it is sent, anything else is refused.
pub fn admission<'a>(ours: Option<&str>, theirs: Option<&'a str>) -> Admission<'a> {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours == theirs => Admission::Admit,
        (Some(ours), Some(theirs)) => Admission::Refuse(ClusterRefusal::Other {
            theirs: theirs.to_string(),
            ours: ours.to_string(),
        }),
        (Some(ours), None) => Admission::Refuse(ClusterRefusal::Missing {
            ours: ours.to_string(),
        }),
        (None, Some(theirs)) => Admission::Adopt(theirs),
        (None, None) => Admission::Admit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_admitted_by_the_same_id_and_a_node_without_one_adopts_the_first() {
        assert!(matches!(
            admission(Some("c1"), Some("c1")),
            Admission::Admit
        ));
        assert!(matches!(admission(None, None), Admission::Admit));
        assert!(matches!(
            admission(None, Some("c9")),
            Admission::Adopt("c9")
        ));
        match admission(Some("c1"), Some("c2")) {
            Admission::Refuse(e @ ClusterRefusal::Other { .. }) => assert_eq!(
                e.to_string(),
                "peer belongs to cluster c2, this node to cluster c1"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
        match admission(Some("c1"), None) {
            Admission::Refuse(e @ ClusterRefusal::Missing { .. }) => assert_eq!(
                e.to_string(),
                "peer sent no cluster id; this node belongs to cluster c1"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_order_of_the_members_does_not_matter() {
        let a = derive_cluster_id(&[(1, "a:1".into()), (2, "b:2".into())]);
        let b = derive_cluster_id(&[(2, "b:2".into()), (1, "a:1".into())]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn other_members_give_another_id() {
        let a = derive_cluster_id(&[(1, "a:1".into()), (2, "b:2".into())]);
        assert_ne!(
            a,
            derive_cluster_id(&[(1, "a:1".into()), (3, "b:2".into())])
        );
        assert_ne!(
            a,
            derive_cluster_id(&[(1, "a:1".into()), (2, "b:3".into())])
        );
        assert_ne!(a, derive_cluster_id(&[(1, "a:1".into())]));
    }

    #[test]
    fn the_hash_is_fnv1a_of_the_sorted_pairs() {
        // Pinned: ids stored by earlier versions must still be derived the same way.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"1=x;" {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(
            derive_cluster_id(&[(1, "x".into())]),
            format!("{hash:016x}")
        );
    }

    #[test]
    fn a_poisoned_cell_is_still_read() {
        let cell: ClusterId = Arc::new(RwLock::new(Some("abc".into())));
        let c = cell.clone();
        let _ = std::thread::spawn(move || {
            let _guard = c.write().unwrap_or_else(|p| p.into_inner());
            panic!("poison");
        })
        .join();
        assert_eq!(cluster_id_of(&cell), Some("abc".into()));
    }
}

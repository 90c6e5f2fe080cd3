//! openraft metrics as a node would publish them, for the unit tests of the node's pure
//! parts (readiness, the member list).

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{BasicNode, RaftMetrics, ServerState};

use crate::types::{StoredMembership, TypeConfig};

/// Metrics of node 1 in `state`, term 5, with `voters` as the membership.
pub(crate) fn metrics(state: ServerState, voters: &[u64]) -> RaftMetrics<TypeConfig> {
    let mut m = RaftMetrics::new_initial(1);
    m.state = state;
    m.current_term = 5;
    let nodes: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|&id| (id, BasicNode::new(format!("127.0.0.1:{id}"))))
        .collect();
    m.membership_config = Arc::new(StoredMembership::new(
        None,
        crate::types::voters_of(nodes).expect("voters have addresses"),
    ));
    m
}

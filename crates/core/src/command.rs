//! Commands: what the Raft log carries. A [`Batch`] is one log entry; the leader fills in
//! `now` and `limits` once, so applying it needs nothing from the replica's environment.

use serde::{Deserialize, Serialize};

use crate::{Data, DomainError, ItemId, Key, Limits, Namespace, Timestamp, Ttl};

/// One log entry: operations decided together at the leader's time `now`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The leader's clock when it proposed the batch. Applying uses the maximum of this and
    /// every earlier stamp, so time in the state machine never goes backwards.
    pub now: Timestamp,
    /// The limits the leader was configured with.
    pub limits: Limits,
    /// The operations, applied in order. An empty batch only purges expired items.
    pub ops: Vec<Op>,
}

/// One operation in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Store an item (`/store_data`).
    Store(StoreOp),
    /// Delete an item (`/delete_data`): absent afterwards, whatever its timestamp.
    Delete(ItemId),
}

/// A validated store request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreOp {
    /// Where the item goes.
    pub id: ItemId,
    /// The item's data, as sent.
    pub data: Data,
    /// How long the item lives after its timestamp.
    pub ttl: Ttl,
    /// The client's timestamp; `None` means "the leader's now".
    pub timestamp: Option<Timestamp>,
}

impl StoreOp {
    /// Validates the parts of a store request that do not depend on the stored state.
    ///
    /// `timestamp_secs` is the client's value in Unix seconds (`None`/`0` for now); `ttl_secs`
    /// must be a whole number of seconds. Size is checked against `limits` here (so an
    /// oversized item is refused before it is proposed) and again when applied.
    pub fn new(
        namespace: &str,
        key: &str,
        data: &str,
        ttl_secs: f64,
        timestamp_secs: Option<f64>,
        limits: &Limits,
    ) -> Result<Self, DomainError> {
        let op = StoreOp {
            id: ItemId {
                namespace: Namespace::new(namespace)?,
                key: Key::new(key)?,
            },
            ttl: Ttl::from_f64(ttl_secs)?,
            timestamp: Timestamp::from_client_secs(timestamp_secs, "timestamp")?,
            data: Data::from(data),
        };
        op.check_size(limits)?;
        Ok(op)
    }

    /// Refuses data larger than the item size limit.
    pub fn check_size(&self, limits: &Limits) -> Result<(), DomainError> {
        let size = self.data.len() as u64;
        if size > limits.max_item_bytes {
            return Err(DomainError::ItemTooLarge {
                size,
                limit: limits.max_item_bytes,
            });
        }
        Ok(())
    }
}

//! The State Manager's HTTP API: translation between HTTP/JSON and the node service.
//!
//! Handlers validate input into domain values, call the [`statemanager_raft::Node`] handle,
//! and map every outcome to a status code and a JSON body exactly once, in [`error`]. Nothing
//! here touches storage or decides a domain rule.
#![warn(missing_docs)]

mod body;
pub mod error;
mod forward;
pub mod fuzzing;
mod handlers;
pub mod latency;
pub mod limits;
pub mod namespaces;
mod router;
pub mod traffic;

pub use handlers::admin::AdminAccess;
pub use handlers::openapi::OPENAPI_JSON;
pub use handlers::probes::{check_readiness, Unready};
pub use limits::{RateLimiter, RequestLimits};
pub use namespaces::Namespaces;
pub use router::{app, forward_router, render_request_latency, ApiState, SharedApiState, ROUTES};

//! The router each serving thread uses.
//!
//! A request clones its router, and inside axum the route's service, the middleware's state
//! and the handler's state: each clone and drop is an atomic reference count. With one router
//! shared by the runtime's worker and the connection threads, those counts sit on cache lines
//! the two cores take from each other on every request. A router of its own for each serving
//! thread (built from the same [`statemanager_api::ApiState`], whose shared parts are behind
//! their own `Arc`s) keeps them on the core that serves the connection. Measured: about
//! 0.3–0.5 µs less CPU per request on two cores (`docs/design.md`, "A router per serving
//! thread").

use std::sync::Arc;

use axum::Router;

use super::threads::Place;

/// The routers of an accept loop: the workers' and one per connection thread.
#[derive(Clone)]
pub struct Routers {
    workers: Router,
    /// Connection thread `n`'s router at `n - 1`.
    threads: Arc<[Router]>,
}

impl Routers {
    /// One router for every connection: the peer port, whose connections stay on the workers.
    pub fn shared(router: Router) -> Self {
        Routers {
            workers: router,
            threads: Arc::from([]),
        }
    }

    /// A router built by `build` for the workers and one for each of `threads` connection
    /// threads.
    pub fn per_thread(threads: usize, build: impl Fn() -> Router) -> Self {
        Routers {
            workers: build(),
            threads: (0..threads).map(|_| build()).collect(),
        }
    }

    /// The router for connections served at `place` (the workers' for a thread without its
    /// own).
    pub fn for_place(&self, place: &Place<'_>) -> Router {
        match place {
            Place::Thread { number, .. } => number
                .checked_sub(1)
                .and_then(|i| self.threads.get(i))
                .unwrap_or(&self.workers)
                .clone(),
            Place::Workers => self.workers.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    /// The text the router answers at `/`.
    async fn answer_of(router: Router) -> String {
        let request = axum::http::Request::new(axum::body::Body::empty());
        let response = router.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_thread_gets_its_own_router_and_the_workers_theirs() {
        let built = std::sync::atomic::AtomicUsize::new(0);
        let routers = Routers::per_thread(2, || {
            let n = built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Router::new().route("/", get(move || async move { format!("router {n}") }))
        });
        assert_eq!(built.into_inner(), 3);
        let handle = tokio::runtime::Handle::current();
        let thread = |number| Place::Thread {
            number,
            handle: &handle,
        };
        assert_eq!(
            answer_of(routers.for_place(&Place::Workers)).await,
            "router 0"
        );
        assert_eq!(answer_of(routers.for_place(&thread(1))).await, "router 1");
        assert_eq!(answer_of(routers.for_place(&thread(2))).await, "router 2");
        // A thread without a router of its own (none is, in practice) uses the workers'.
        assert_eq!(answer_of(routers.for_place(&thread(3))).await, "router 0");

        let shared = Routers::shared(Router::new().route("/", get(|| async { "shared" })));
        assert_eq!(answer_of(shared.for_place(&thread(1))).await, "shared");
        assert_eq!(answer_of(shared.for_place(&Place::Workers)).await, "shared");
    }
}

//! strata's HTTP surface: the route map, extractors, handlers and the error envelope. Handlers
//! turn requests into domain commands and call the services in `strata-core`.
#![forbid(unsafe_code)]

mod console;
mod context;
mod docs;
pub mod error;
pub mod extract;
mod handlers;
pub mod openapi;
mod params;
mod router;
mod shed;
mod write;

use strata_core::Strata;

pub use router::{BODY_LIMIT, router};
pub use shed::DEFAULT_MAX_IN_FLIGHT;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub strata: Strata,
    /// Permits for requests in flight; none left is 503 at once (see `shed`).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    in_flight_limit: usize,
}

impl AppState {
    /// The state of a server that admits at most `max_in_flight` API requests at once.
    pub fn new(strata: Strata, max_in_flight: usize) -> Self {
        let limit = max_in_flight.max(1);
        Self { strata, in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(limit)), in_flight_limit: limit }
    }

    fn in_flight_limit(&self) -> usize {
        self.in_flight_limit
    }
}

//! strata's HTTP surface: the route map, extractors, handlers and the error envelope. Handlers
//! turn requests into domain commands and call the services in `strata-core`.
#![forbid(unsafe_code)]

mod context;
mod docs;
pub mod error;
pub mod extract;
mod handlers;
pub mod openapi;
mod params;
mod router;
mod write;

use strata_core::Strata;

pub use router::{BODY_LIMIT, router};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub strata: Strata,
}

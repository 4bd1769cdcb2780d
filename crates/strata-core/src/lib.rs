//! strata's domain: identifiers, rules, the services that apply them, and the Store port the
//! database backends implement. Nothing here knows about HTTP or SQL.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod audit;
pub mod clock;
pub mod content;
pub mod credits;
pub mod cursor;
pub mod error;
pub mod event;
pub mod event_data;
pub mod id;
pub mod idempotency;
pub mod key;
pub mod ledger;
pub mod metadata;
pub mod org;
pub mod post;
pub mod project;
pub mod ratelimit;
pub mod schema;
pub mod scope;
mod seal;
pub mod service;
pub mod store;
pub mod usage;
pub mod webhook;
pub mod wire;

pub use error::{CoreError, Result};
pub use service::Strata;

//! Shared vocabulary of HelixStack: identifiers, digests, site paths, the
//! deployment manifest, bus events and API bodies.
//!
//! Every type that is persisted or crosses a process boundary lives here, in
//! one versioned place. This crate does no I/O and depends on no other
//! HelixStack crate; it may compute (hashing, validation) but never reads a
//! file, a socket or the clock's side effects beyond what callers pass in.

pub mod api;
pub mod audit;
pub mod build;
pub mod cron;
pub mod digest;
pub mod domains;
pub mod env;
pub mod events;
pub mod functions;
pub mod hosts;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod manifest;
pub mod net;
pub mod path;
pub mod routes;

pub use digest::Digest;
pub use ids::{DeploymentId, ProjectName};

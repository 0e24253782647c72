//! The HelixStack API client: the deploy protocol (scan a directory, hash,
//! upload what the server lacks, finalize) and typed calls to `/api/v1`.
//!
//! The CLI and the build plane both deploy through it, so a build's output
//! takes exactly the path `helix deploy` takes. It never touches the state
//! store or the blob store directly.

mod api;
pub mod deploy;
pub mod scan;

pub use api::{Api, ApiFailure, Unreachable};

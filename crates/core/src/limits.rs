//! Upload limits, shared by the API (which enforces them) and the CLI
//! (which checks them before it uploads anything).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Most files in one deployment.
    pub max_files: usize,
    /// Largest deployment, all files together, in bytes.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 100 * 1024 * 1024, max_files: 100_000, max_total_bytes: 10 * 1024 * 1024 * 1024 }
    }
}

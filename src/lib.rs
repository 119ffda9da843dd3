//! placeholder
pub use crashguard_runtime::*;

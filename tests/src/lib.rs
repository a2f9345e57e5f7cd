//! Shared harness for bridgemesh's integration and end-to-end tests.

pub mod chromium;
pub mod harness;
pub mod netns;
pub mod turn;

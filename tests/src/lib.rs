//! Shared harness for bridgemesh's integration and end-to-end tests.

pub mod bench;
pub mod chromium;
pub mod harness;
pub mod https;
pub mod netns;
pub mod oidc_provider;
pub mod pebble;
pub mod tone;
pub mod turn;

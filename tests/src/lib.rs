//! Conformance suites shared across builds.
//!
//! Each suite is a set of plain `async fn`s with no runtime of their own. The integration tests under `tests/`
//! call every one of them from `#[burrow_env::test]`, which runs them on real tokio in a normal build and in the
//! madsim simulator in a `--cfg madsim` build. Writing a body once and running it on both is what shows the two
//! sides of the seam behave alike, not merely that they compile alike.

pub mod child;
pub mod env;

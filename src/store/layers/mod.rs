//! Destinations that wrap another destination and change one concern of it.
//! `store::open_with` composes them, in one place.

#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;

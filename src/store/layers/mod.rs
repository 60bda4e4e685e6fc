//! Destinations that wrap another destination and change one concern of it.
//! `store::compose` puts them together, in one place; `store::open_with`
//! chooses them for a destination of the config.

pub mod dry_run;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub mod logging;
pub mod retry;
pub mod webdav_upload;

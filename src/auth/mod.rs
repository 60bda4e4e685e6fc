//! Who may do what: passwords (argon2id), random secrets, server-side
//! sessions with idle and absolute lifetimes, API tokens, the one table of
//! roles and actions, the login rate limit, and the hash-chained audit log.
//!
//! The web layer and the CLI call these; nothing here knows about HTTP or
//! terminals. State lives in the [`StateStore`](crate::state::StateStore), which
//! keeps only hashes of passwords, session ids and tokens.

pub mod audit;
pub mod limit;
pub mod names;
pub mod password;
pub mod role;
pub mod secret;
pub mod session;
pub mod token;

pub use audit::{Broken, BrokenKind, VerifyReport};
pub use limit::{LoginLimiter, LoginLimits};
pub use role::{Action, Principal, Via};
pub use session::{Lifetimes, Login, LoginError};

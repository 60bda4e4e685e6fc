//! cairn: one binary that keeps an application's data safe.
//!
//! The library is the engine: configuration, sources, the streaming pipeline,
//! destinations and the operations built from them (backup, restore, verify,
//! list). The command-line interface in `cli` is a thin layer on top; the engine
//! never depends on it.

pub mod auth;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod cron;
pub mod descriptor_limit;
pub mod drill;
pub mod engine;
pub mod error;
pub mod fault_point;
pub mod health;
pub mod keys;
pub mod leftovers;
pub mod local_fs;
pub mod notify;
pub mod pipeline;
pub mod progress;
pub mod redact;
pub mod retention;
pub mod schedule;
pub mod source;
pub mod state;
pub mod store;
pub mod time;
pub mod web;

pub use error::{Error, Result, StorageKind};

/// The version recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

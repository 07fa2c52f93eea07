//! cloudsync: an on-premise folder shown through FUSE and synced to a cloud.
//!
//! The crate is a library with a thin binary on top, so that the filesystem core, the journal
//! and the sync engine can be tested without mounting anything. See `doc/SEMANTICS.md` for what
//! each operation promises.

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod beside;
pub mod cli;
pub mod client;
pub mod cloud;
pub mod config;
pub mod control;
pub mod doctor;
pub mod fs;
pub mod fuse;
pub mod ignore;
pub mod journal;
pub mod metrics;
pub mod mount;
pub mod mount_helper;
pub mod mountinfo;
pub mod notify;
pub mod onprem;
pub mod paths;
pub mod stale_mount;
pub mod status;
pub mod sync;
pub mod watch;
pub mod web;

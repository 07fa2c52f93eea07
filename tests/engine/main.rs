//! Engine tests without FUSE: the real journal writer, pusher and puller over a temporary
//! ONPREM and an in-process cloud (`file://` or in memory, with injected faults), in the manner
//! of the Nextcloud client's FakeFolder tests, and a fast proptest model of sync on top.
//!
//! `fake` is the harness, `cases` the hand-written scenarios, `cloud_moves` those of moves
//! made in the cloud, `model` the random one.

mod cases;
mod cloud_moves;
mod fake;
mod model;

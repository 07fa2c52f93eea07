//! Helpers shared by the integration tests: real servers to test against.
#![allow(dead_code)]

pub mod proxy;
pub mod s3;
pub mod webdav;

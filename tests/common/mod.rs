//! Shared helpers of the root tests.
#![allow(dead_code)]

pub mod store;

//! Signals and messages between processes on one machine, with no broker.
//!
//! # Overview
//!
//! The bus will share the core crate's names, patterns, signals and lag model between the
//! processes of one machine, with no server to run. It has not landed yet: for now this crate
//! only re-exports the vocabulary it will speak, so that code written against
//! `ephemeral_bus::Name` keeps compiling when the transport arrives.
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]

pub use ephemeral::{Buffer, Lagged, Name, NameError, Overflow, Pattern};

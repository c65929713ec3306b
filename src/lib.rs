//! multiguna: the ISO 8583 switch and append-only ledger behind the Kartu Multiguna.
//!
//! A request's way through, one module each (design.md):
//! `net` (TCP, framing) -> `iso8583` (codec) -> `edge` (wire to domain) -> `policy`
//! (rules) -> `authoriser` (single writer) -> `ledger` (durable batches) and back.

pub mod admin;
pub mod authoriser;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod domain;
pub mod edge;
pub mod import;
pub mod iso8583;
pub mod ledger;
pub mod loadgen;
pub mod net;
pub mod policy;
pub mod security;
pub mod server;

//! The switch's own language: what the edges translate ISO 8583 into and out of.
//! Nothing past the edge touches field numbers (design.md, "Request / Response").

pub mod money;
pub mod pan;
pub mod request;
pub mod response;
pub mod time;

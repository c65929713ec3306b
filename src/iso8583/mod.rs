//! ISO 8583:1987 ASCII codec (jPOS `ISO87APackager` / pyiso8583 `default_ascii`).
//!
//! Our own, table-driven and zero-copy; it never panics on any input and its errors
//! name the field and the byte offset, never the field's content (design.md says why
//! `iso8583_rs` was rejected).

mod error;
mod message;
mod spec;

pub use error::{CodecError, Location, Reason};
pub use message::{Message, MessageBuilder, Mti, ParseError};
pub use spec::{Class, FieldSpec, Kind, ISO87A};

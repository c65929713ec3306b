//! Codec errors. They say where (field, byte offset) and why, and never what: field
//! contents may be card data, so no variant carries input bytes.

use std::fmt;

use super::spec::Class;

/// The part of the message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Mti,
    /// The primary or secondary bitmap.
    Bitmap,
    /// A data element, by field number.
    Field(u8),
    /// Bytes after the last field.
    Trailer,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mti => f.write_str("MTI"),
            Location::Bitmap => f.write_str("bitmap"),
            Location::Field(n) => write!(f, "field {n}"),
            Location::Trailer => f.write_str("end of message"),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("truncated: needs {needed} bytes, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("{}", .0.violation())]
    InvalidByte(Class),
    #[error("non-digit in MTI")]
    NonDigitMti,
    #[error("non-hex character in bitmap")]
    NonHexBitmap,
    #[error("non-digit in length prefix")]
    NonDigitLength,
    #[error("length {len} exceeds maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("length {len}, expected exactly {expected}")]
    WrongLength { len: usize, expected: usize },
    #[error("bit 65 (tertiary bitmap) is not supported")]
    TertiaryBitmap,
    #[error("not a data field that can be set")]
    NotSettable,
    #[error("{count} unexpected bytes after the last field")]
    TrailingBytes { count: usize },
}

/// A decoding or encoding error.
///
/// Parsing: `offset` is the byte offset in the message. Building (`MessageBuilder::set`):
/// it is the offset within the value being set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{location} at byte {offset}: {reason}")]
pub struct CodecError {
    pub location: Location,
    pub offset: usize,
    pub reason: Reason,
}

impl CodecError {
    pub(super) const fn new(location: Location, offset: usize, reason: Reason) -> Self {
        CodecError {
            location,
            offset,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_field_offset_and_reason() {
        let e = CodecError::new(Location::Field(4), 20, Reason::InvalidByte(Class::N));
        assert_eq!(
            e.to_string(),
            "field 4 at byte 20: non-digit in numeric field"
        );
        let e = CodecError::new(Location::Bitmap, 4, Reason::NonHexBitmap);
        assert_eq!(
            e.to_string(),
            "bitmap at byte 4: non-hex character in bitmap"
        );
        let e = CodecError::new(Location::Mti, 0, Reason::NonDigitMti);
        assert_eq!(e.to_string(), "MTI at byte 0: non-digit in MTI");
    }
}

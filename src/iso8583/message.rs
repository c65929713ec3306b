//! MTI, zero-copy parsed messages and the owned builder used for responses.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::error::{CodecError, Location, Reason};
use super::spec::{FieldSpec, Kind, ISO87A};

/// Slots in the per-field arrays: index = field number, 0 and 1 unused.
const SLOTS: usize = 129;
/// Characters of one bitmap on the wire (64 bits as hex).
const BITMAP_CHARS: usize = 16;
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

// ---------------------------------------------------------------------------
// MTI

/// Message type indicator: four ASCII digits (version, class, function, origin).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mti([u8; 4]);

impl Mti {
    pub const AUTHORIZATION_REQUEST: Mti = Mti(*b"0100");
    pub const AUTHORIZATION_RESPONSE: Mti = Mti(*b"0110");
    pub const FINANCIAL_REQUEST: Mti = Mti(*b"0200");
    pub const FINANCIAL_RESPONSE: Mti = Mti(*b"0210");
    pub const FINANCIAL_ADVICE: Mti = Mti(*b"0220");
    pub const FINANCIAL_ADVICE_RESPONSE: Mti = Mti(*b"0230");
    pub const REVERSAL_REQUEST: Mti = Mti(*b"0400");
    pub const REVERSAL_RESPONSE: Mti = Mti(*b"0410");
    pub const REVERSAL_ADVICE: Mti = Mti(*b"0420");
    pub const REVERSAL_ADVICE_RESPONSE: Mti = Mti(*b"0430");
    pub const NETWORK_REQUEST: Mti = Mti(*b"0800");
    pub const NETWORK_RESPONSE: Mti = Mti(*b"0810");

    /// Validates exactly four ASCII digits.
    pub fn new(digits: &[u8]) -> Result<Mti, CodecError> {
        let array: [u8; 4] = digits.try_into().map_err(|_| {
            let reason = Reason::WrongLength {
                len: digits.len(),
                expected: 4,
            };
            CodecError::new(Location::Mti, 0, reason)
        })?;
        match array.iter().position(|b| !b.is_ascii_digit()) {
            Some(pos) => Err(CodecError::new(Location::Mti, pos, Reason::NonDigitMti)),
            None => Ok(Mti(array)),
        }
    }

    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only digits are ever stored, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// First digit: 0 = ISO 8583:1987.
    pub const fn version(self) -> u8 {
        self.0[0].wrapping_sub(b'0')
    }

    /// Second digit: 1 authorization, 2 financial, 4 reversal, 8 network management.
    pub const fn class(self) -> u8 {
        self.0[1].wrapping_sub(b'0')
    }

    /// Third digit: 0 request, 1 request response, 2 advice, 3 advice response, ...
    pub const fn function(self) -> u8 {
        self.0[2].wrapping_sub(b'0')
    }

    /// Fourth digit: 0 acquirer, 1 acquirer repeat, 2 issuer, ...
    pub const fn origin(self) -> u8 {
        self.0[3].wrapping_sub(b'0')
    }

    /// Requests and advices have an even function digit; responses an odd one.
    pub const fn is_response(self) -> bool {
        self.function() % 2 == 1
    }

    /// Repeats (0201, 0221, 0401, 0421) have an odd origin digit.
    pub const fn is_repeat(self) -> bool {
        self.origin() % 2 == 1
    }

    /// The MTI that answers this one (0200 -> 0210, 0221 -> 0230, 0800 -> 0810):
    /// function digit + 1, origin 0. `None` if this already is a response.
    pub const fn response(self) -> Option<Mti> {
        let [version, class, function, _] = self.0;
        if self.is_response() {
            return None;
        }
        Some(Mti([version, class, function + 1, b'0']))
    }
}

impl FromStr for Mti {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mti::new(s.as_bytes())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Bitmap and cursor

/// Presence bits for fields 1..=128; field n is bit `128 - n`, as on the wire.
#[derive(Clone, Copy, Default)]
struct Bitmap(u128);

impl Bitmap {
    const fn bit(n: u8) -> u128 {
        if n == 0 || n > 128 {
            return 0;
        }
        1u128 << (128 - n as u32)
    }

    const fn has(self, n: u8) -> bool {
        self.0 & Self::bit(n) != 0
    }

    fn set(&mut self, n: u8) {
        self.0 |= Self::bit(n);
    }

    const fn primary(self) -> u64 {
        (self.0 >> 64) as u64
    }

    const fn secondary(self) -> u64 {
        // Truncation keeps exactly the low 64 bits: fields 65..=128.
        self.0 as u64
    }
}

/// Reads the input front to back, never past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, location: Location) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| Some((end, self.bytes.get(self.pos..end)?))) {
            Some((end, slice)) => {
                self.pos = end;
                Ok(slice)
            }
            None => {
                let available = self.bytes.len().saturating_sub(self.pos);
                let reason = Reason::Truncated {
                    needed: n,
                    available,
                };
                Err(CodecError::new(location, self.pos, reason))
            }
        }
    }

    fn finish(&self) -> Result<(), CodecError> {
        match self.bytes.len().saturating_sub(self.pos) {
            0 => Ok(()),
            count => {
                let reason = Reason::TrailingBytes { count };
                Err(CodecError::new(Location::Trailer, self.pos, reason))
            }
        }
    }
}

fn read_mti(cur: &mut Cursor<'_>) -> Result<Mti, CodecError> {
    let start = cur.pos;
    let digits = cur.take(4, Location::Mti)?;
    Mti::new(digits).map_err(|e| CodecError::new(Location::Mti, start + e.offset, e.reason))
}

/// One 16-character hex bitmap; upper- and lower-case are both accepted.
fn read_bitmap_word(cur: &mut Cursor<'_>) -> Result<u64, CodecError> {
    let start = cur.pos;
    let chars = cur.take(BITMAP_CHARS, Location::Bitmap)?;
    chars.iter().enumerate().try_fold(0u64, |acc, (i, &c)| {
        let nibble = char::from(c).to_digit(16).ok_or(CodecError::new(
            Location::Bitmap,
            start + i,
            Reason::NonHexBitmap,
        ))?;
        Ok(acc << 4 | u64::from(nibble))
    })
}

fn read_bitmaps(cur: &mut Cursor<'_>) -> Result<Bitmap, CodecError> {
    let primary = read_bitmap_word(cur)?;
    let mut bitmap = Bitmap(u128::from(primary) << 64);
    if bitmap.has(1) {
        let start = cur.pos;
        bitmap.0 |= u128::from(read_bitmap_word(cur)?);
        // pyiso8583 reads bit 65 as "tertiary bitmap follows", jPOS as a 1-byte
        // field; refusing it beats guessing which one the sender meant.
        if bitmap.has(65) {
            return Err(CodecError::new(
                Location::Bitmap,
                start,
                Reason::TertiaryBitmap,
            ));
        }
    }
    Ok(bitmap)
}

/// Reads an LL/LLL prefix; the length is checked against the spec's maximum.
fn read_length(cur: &mut Cursor<'_>, spec: &FieldSpec) -> Result<usize, CodecError> {
    let location = Location::Field(spec.number);
    let start = cur.pos;
    let digits = cur.take(spec.kind.prefix_len(), location)?;
    let len = digits.iter().enumerate().try_fold(0usize, |acc, (i, &d)| {
        if !d.is_ascii_digit() {
            return Err(CodecError::new(location, start + i, Reason::NonDigitLength));
        }
        Ok(acc * 10 + usize::from(d - b'0'))
    })?;
    let max = usize::from(spec.max_len);
    if len > max {
        return Err(CodecError::new(
            location,
            start,
            Reason::TooLong { len, max },
        ));
    }
    Ok(len)
}

fn read_field<'a>(cur: &mut Cursor<'a>, spec: &FieldSpec) -> Result<&'a [u8], CodecError> {
    let location = Location::Field(spec.number);
    let len = match spec.kind {
        Kind::Fixed => usize::from(spec.max_len),
        Kind::LlVar | Kind::LllVar => read_length(cur, spec)?,
    };
    let start = cur.pos;
    let value = cur.take(len, location)?;
    check_value(spec, value).map_err(|(i, reason)| CodecError::new(location, start + i, reason))?;
    Ok(value)
}

/// Length and character class of a value; the error offset is within `value`.
fn check_value(spec: &FieldSpec, value: &[u8]) -> Result<(), (usize, Reason)> {
    let len = value.len();
    let max = usize::from(spec.max_len);
    match spec.kind {
        Kind::Fixed if len != max => {
            return Err((0, Reason::WrongLength { len, expected: max }));
        }
        Kind::LlVar | Kind::LllVar if len > max => return Err((0, Reason::TooLong { len, max })),
        _ => {}
    }
    match spec.class.first_invalid(value) {
        Some(i) => Err((i, Reason::InvalidByte(spec.class))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Parsed message

/// A message parsed in place: field values borrow from the input buffer.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    mti: Mti,
    fields: [Option<&'a [u8]>; SLOTS],
}

/// A parse failure, with whatever was decoded before it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct ParseError<'a> {
    pub error: CodecError,
    /// MTI and every field before the failing one; `None` if the MTI itself failed.
    /// Enough to answer a malformed 0200 that still carries F11 with code 30.
    /// Boxed so that `Result<Message, ParseError>` stays one `Message` wide: the
    /// allocation happens only on the error path.
    pub partial: Option<Box<Message<'a>>>,
}

impl<'a> Message<'a> {
    /// Parses one complete message (no length header); trailing bytes are an error.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParseError<'a>> {
        let mut cur = Cursor { bytes, pos: 0 };
        let mti = read_mti(&mut cur).map_err(|error| ParseError {
            error,
            partial: None,
        })?;
        let mut message = Message {
            mti,
            fields: [None; SLOTS],
        };
        match message.parse_body(&mut cur) {
            Ok(()) => Ok(message),
            Err(error) => Err(ParseError {
                error,
                partial: Some(Box::new(message)),
            }),
        }
    }

    fn parse_body(&mut self, cur: &mut Cursor<'a>) -> Result<(), CodecError> {
        let bitmap = read_bitmaps(cur)?;
        // Slot 1 is the secondary bitmap, already read above.
        for (spec, slot) in ISO87A.iter().zip(self.fields.iter_mut()).skip(2) {
            if bitmap.has(spec.number) {
                *slot = Some(read_field(cur, spec)?);
            }
        }
        cur.finish()
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Raw value of field `n` (2..=128), without its length prefix.
    pub fn field(&self, n: u8) -> Option<&'a [u8]> {
        self.fields.get(usize::from(n)).copied().flatten()
    }

    /// Field `n` as text; every stored field was checked to be ASCII.
    pub fn field_str(&self, n: u8) -> Option<&'a str> {
        self.field(n).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn has(&self, n: u8) -> bool {
        self.field(n).is_some()
    }

    /// Present fields in ascending order, as (number, value).
    pub fn fields(&self) -> impl Iterator<Item = (u8, &'a [u8])> + Clone + '_ {
        ISO87A
            .iter()
            .zip(self.fields.iter())
            .filter_map(|(spec, value)| value.map(|v| (spec.number, v)))
    }

    /// An owned copy, e.g. to turn a request into its response.
    pub fn to_builder(&self) -> MessageBuilder {
        let mut builder = MessageBuilder::new(self.mti);
        builder
            .data
            .reserve(self.fields().map(|(_, v)| v.len()).sum());
        for (n, value) in self.fields() {
            // Already validated by `parse`, so no second check.
            builder.store(n, value);
        }
        builder
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_message(f, "Message", self.mti, self.fields())
    }
}

// ---------------------------------------------------------------------------
// Builder

/// Where a field's value lies in the builder's buffer. `u32`, not `usize`: a builder is
/// moved and boxed on its way from the edge to the writing task, and its 129 slots were
/// 3 KB at 24 bytes each (half that now); `set` keeps the buffer under `DATA_BYTES_MAX`.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        // u32 -> usize: lossless wherever usize has 32 bits or more.
        self.start as usize..self.end as usize
    }
}

/// A builder's buffer, at most: far beyond any message (every field at its longest is
/// under 128 KiB), well inside a `Span`.
const DATA_BYTES_MAX: usize = 1 << 24;

/// An owned message under construction. Values live in one buffer so that building
/// a response costs one allocation, not one per field. Replacing a field leaves its
/// old bytes unused in the buffer until the builder is dropped.
#[derive(Clone)]
pub struct MessageBuilder {
    mti: Mti,
    data: Vec<u8>,
    spans: [Option<Span>; SLOTS],
}

impl MessageBuilder {
    pub fn new(mti: Mti) -> MessageBuilder {
        MessageBuilder {
            mti,
            data: Vec::with_capacity(256),
            spans: [None; SLOTS],
        }
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    pub fn set_mti(&mut self, mti: Mti) -> &mut Self {
        self.mti = mti;
        self
    }

    /// Sets field `n` (2..=128 except 65) after checking length and class.
    pub fn set(&mut self, n: u8, value: &[u8]) -> Result<&mut Self, CodecError> {
        let location = Location::Field(n);
        let spec = match FieldSpec::get(n) {
            Some(spec) if n >= 2 && n != 65 => spec,
            _ => return Err(CodecError::new(location, 0, Reason::NotSettable)),
        };
        check_value(spec, value).map_err(|(i, reason)| CodecError::new(location, i, reason))?;
        let len = self.data.len() + value.len();
        if len > DATA_BYTES_MAX {
            // Only a builder whose fields were replaced a hundred thousand times.
            let reason = Reason::TooLong {
                len,
                max: DATA_BYTES_MAX,
            };
            return Err(CodecError::new(location, 0, reason));
        }
        self.store(n, value);
        Ok(self)
    }

    pub fn set_str(&mut self, n: u8, value: &str) -> Result<&mut Self, CodecError> {
        self.set(n, value.as_bytes())
    }

    /// Callers keep the buffer under `DATA_BYTES_MAX` (`set` checks; a parsed message
    /// is a frame of at most 64 KiB).
    fn store(&mut self, n: u8, value: &[u8]) {
        let (Ok(start), Ok(end)) = (
            u32::try_from(self.data.len()),
            u32::try_from(self.data.len() + value.len()),
        ) else {
            return;
        };
        self.data.extend_from_slice(value);
        if let Some(slot) = self.spans.get_mut(usize::from(n)) {
            *slot = Some(Span { start, end });
        }
    }

    pub fn remove(&mut self, n: u8) -> &mut Self {
        if let Some(slot) = self.spans.get_mut(usize::from(n)) {
            *slot = None;
        }
        self
    }

    pub fn get(&self, n: u8) -> Option<&[u8]> {
        let span = self.spans.get(usize::from(n)).copied().flatten()?;
        self.data.get(span.range())
    }

    pub fn get_str(&self, n: u8) -> Option<&str> {
        self.get(n).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn has(&self, n: u8) -> bool {
        self.get(n).is_some()
    }

    /// Present fields in ascending order, as (number, value).
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> + Clone + '_ {
        self.present().map(|(spec, v)| (spec.number, v))
    }

    fn present(&self) -> impl Iterator<Item = (&'static FieldSpec, &[u8])> + Clone + '_ {
        ISO87A
            .iter()
            .zip(self.spans.iter())
            .filter_map(|(spec, span)| {
                let span = (*span)?;
                Some((spec, self.data.get(span.range())?))
            })
    }

    fn bitmap(&self) -> Bitmap {
        let mut bitmap = Bitmap::default();
        for (spec, _) in self.present() {
            bitmap.set(spec.number);
        }
        if bitmap.secondary() != 0 {
            bitmap.set(1);
        }
        bitmap
    }

    /// Appends the encoded message (no length header) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let bitmap = self.bitmap();
        out.extend_from_slice(self.mti.as_bytes());
        push_hex(out, bitmap.primary());
        if bitmap.has(1) {
            push_hex(out, bitmap.secondary());
        }
        for (spec, value) in self.present() {
            push_length(out, spec.kind, value.len());
            out.extend_from_slice(value);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 2 * BITMAP_CHARS + self.data.len() + 3 * 16);
        self.encode(&mut out);
        out
    }
}

impl fmt::Debug for MessageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_message(f, "MessageBuilder", self.mti, self.fields())
    }
}

fn push_hex(out: &mut Vec<u8>, word: u64) {
    for shift in (0..BITMAP_CHARS).rev() {
        let nibble = (word >> (shift * 4)) & 0xF;
        out.push(HEX_UPPER[nibble as usize]);
    }
}

/// Writes the LL/LLL prefix; `len` was checked against `max_len` (<= 999).
fn push_length(out: &mut Vec<u8>, kind: Kind, len: usize) {
    let digit = |d: usize| b'0' + (d % 10) as u8;
    match kind {
        Kind::Fixed => {}
        Kind::LlVar => out.extend_from_slice(&[digit(len / 10), digit(len)]),
        Kind::LllVar => out.extend_from_slice(&[digit(len / 100), digit(len / 10), digit(len)]),
    }
}

// ---------------------------------------------------------------------------
// Masked Debug

fn debug_message<'v>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    mti: Mti,
    fields: impl Iterator<Item = (u8, &'v [u8])> + Clone,
) -> fmt::Result {
    f.debug_struct(name)
        .field("mti", &mti.as_str())
        .field("fields", &MaskedFields(fields))
        .finish()
}

struct MaskedFields<I>(I);

impl<'v, I: Iterator<Item = (u8, &'v [u8])> + Clone> fmt::Debug for MaskedFields<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self
            .0
            .clone()
            .map(|(number, value)| (number, Masked { number, value }));
        f.debug_map().entries(entries).finish()
    }
}

/// A field value as it may appear in logs: card data is never shown whole.
struct Masked<'v> {
    number: u8,
    value: &'v [u8],
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(text) = std::str::from_utf8(self.value) else {
            return write!(f, "<{} bytes>", self.value.len());
        };
        match self.number {
            // PAN and extended PAN: first 6 and last 4, as PCI DSS allows.
            2 | 34 => mask_pan(f, text),
            // Tracks 2, 3, 1 and ICC data (which holds a track 2 equivalent).
            35 | 36 | 45 | 55 => write!(f, "<{} bytes masked>", text.len()),
            // PIN block, security control, MACs.
            52 | 53 | 64 | 96 | 128 => f.write_str("****"),
            _ => fmt::Debug::fmt(text, f),
        }
    }
}

fn mask_pan(f: &mut fmt::Formatter<'_>, pan: &str) -> fmt::Result {
    let len = pan.len();
    f.write_char('"')?;
    match (pan.get(..6), len.checked_sub(4).and_then(|i| pan.get(i..))) {
        (Some(head), Some(tail)) if len > 10 => {
            f.write_str(head)?;
            (10..len).try_for_each(|_| f.write_char('*'))?;
            f.write_str(tail)?;
        }
        // Too short to show anything safely.
        _ => (0..len).try_for_each(|_| f.write_char('*'))?,
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "6034560000000000";
    const TRACK2: &str = "6034560000000000=29121010000012345678";
    const PIN_BLOCK: &str = "A1B2C3D4E5F60718";

    fn cat(parts: &[&str]) -> Vec<u8> {
        parts.concat().into_bytes()
    }

    fn purchase() -> MessageBuilder {
        let mut b = MessageBuilder::new(Mti::FINANCIAL_REQUEST);
        let fields: [(u8, &str); 8] = [
            (2, PAN),
            (3, "000000"),
            (4, "000000150000"),
            (11, "123456"),
            (35, TRACK2),
            (41, "TERM0001"),
            (49, "360"),
            (52, PIN_BLOCK),
        ];
        for (n, v) in fields {
            b.set_str(n, v).expect("valid test field");
        }
        b
    }

    #[test]
    fn mti_helpers() {
        let cases = [
            ("0100", "0110"),
            ("0200", "0210"),
            ("0220", "0230"),
            ("0221", "0230"),
            ("0400", "0410"),
            ("0401", "0410"),
            ("0420", "0430"),
            ("0421", "0430"),
            ("0800", "0810"),
        ];
        for (req, resp) in cases {
            let mti: Mti = req.parse().expect("digits");
            assert_eq!(
                mti.response().map(|m| m.to_string()),
                Some(resp.to_string())
            );
        }
        assert_eq!(Mti::FINANCIAL_RESPONSE.response(), None);
        let m = Mti::REVERSAL_ADVICE;
        assert_eq!(
            (m.version(), m.class(), m.function(), m.origin()),
            (0, 4, 2, 0)
        );
        assert!("02x0".parse::<Mti>().is_err());
        assert!("020".parse::<Mti>().is_err());
    }

    #[test]
    fn encode_then_parse() {
        let bytes = purchase().to_bytes();
        assert!(bytes.starts_with(b"0200"));
        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.mti(), Mti::FINANCIAL_REQUEST);
        assert_eq!(msg.field_str(2), Some(PAN));
        assert_eq!(msg.field_str(4), Some("000000150000"));
        assert_eq!(msg.field(5), None);
        assert_eq!(msg.field(200), None);
        let numbers: Vec<u8> = msg.fields().map(|(n, _)| n).collect();
        assert_eq!(numbers, [2, 3, 4, 11, 35, 41, 49, 52]);
        assert_eq!(msg.to_builder().to_bytes(), bytes);
    }

    #[test]
    fn secondary_bitmap_only_when_needed() {
        let mut b = MessageBuilder::new(Mti::NETWORK_REQUEST);
        b.set_str(11, "000001").expect("ok");
        assert_eq!(&b.to_bytes()[..20], b"08000020000000000000");
        b.set_str(70, "301").expect("ok");
        let bytes = b.to_bytes();
        assert_eq!(
            bytes,
            cat(&["0800", "8020000000000000", "0400000000000000", "000001301"])
        );
    }

    #[test]
    fn lower_case_bitmap_accepted() {
        let bytes = cat(&[
            "0800",
            "a020000000000000",
            "0400000000000000",
            "000000",
            "000001",
            "301",
        ]);
        let msg = Message::parse(&bytes).expect("ok");
        assert_eq!(msg.field_str(3), Some("000000"));
        assert_eq!(msg.field_str(11), Some("000001"));
        assert_eq!(msg.field_str(70), Some("301"));
    }

    #[test]
    fn errors_name_field_and_offset() {
        let bad = cat(&["0200", "3000000000000000", "00000X", "000000000100"]);
        let err = Message::parse(&bad).expect_err("non-digit");
        assert_eq!(
            err.to_string(),
            "field 3 at byte 25: non-digit in numeric field"
        );
        let partial = err.partial.expect("mti parsed");
        assert_eq!(partial.mti(), Mti::FINANCIAL_REQUEST);
        assert_eq!(partial.fields().count(), 0);
    }

    #[test]
    fn partial_keeps_fields_before_failure() {
        // F11 fine, F41 truncated.
        let bad = cat(&["0200", "0020000000800000", "123456", "TERM"]);
        let err = Message::parse(&bad).expect_err("truncated");
        assert_eq!(err.error.location, Location::Field(41));
        assert_eq!(err.error.offset, 26);
        let partial = err.partial.expect("mti parsed");
        assert_eq!(partial.field_str(11), Some("123456"));
    }

    #[test]
    fn rejects_trailing_bytes_and_tertiary_bitmap() {
        let bytes = cat(&["0800", "0020000000000000", "000001", "X"]);
        let err = Message::parse(&bytes).expect_err("trailing");
        assert_eq!(
            err.to_string(),
            "end of message at byte 26: 1 unexpected bytes after the last field"
        );
        let bytes = cat(&["0800", "8000000000000000", "8000000000000000"]);
        let err = Message::parse(&bytes).expect_err("bit 65");
        assert_eq!(err.error.offset, 20);
        assert_eq!(err.error.reason, Reason::TertiaryBitmap);
        let err = Message::parse(b"02").expect_err("short");
        assert!(err.partial.is_none());
    }

    #[test]
    fn length_prefix_checked() {
        let bytes = cat(&["0200", "4000000000000000", "20", "60345600000000000000"]);
        let err = Message::parse(&bytes).expect_err("20 > 19");
        assert_eq!(
            err.to_string(),
            "field 2 at byte 20: length 20 exceeds maximum 19"
        );
        let bytes = cat(&["0200", "4000000000000000", "x6", "603456"]);
        let err = Message::parse(&bytes).expect_err("prefix");
        assert_eq!(err.error.reason, Reason::NonDigitLength);
    }

    #[test]
    fn a_builder_s_buffer_is_bounded_and_its_fields_stay_right() {
        let mut b = MessageBuilder::new(Mti::FINANCIAL_RESPONSE);
        b.set_str(39, "00").expect("ok");
        let long = "x".repeat(999); // F48, LLLVAR: its longest
        let mut refused = None;
        for i in 0..(DATA_BYTES_MAX / 999 + 2) {
            if let Err(err) = b.set_str(48, &long) {
                refused = Some((i, err));
                break;
            }
        }
        let (i, err) = refused.expect("refused before the buffer passes its bound");
        assert!(i >= DATA_BYTES_MAX / 999 - 1, "refused early, at {i}");
        assert!(matches!(err.reason, Reason::TooLong { max, .. } if max == DATA_BYTES_MAX));
        // The fields set before are intact, the last accepted F48 is the one read.
        assert_eq!(b.get_str(39), Some("00"));
        assert_eq!(b.get(48).map(<[u8]>::len), Some(999));
        let bytes = b.to_bytes();
        let parsed = Message::parse(&bytes).expect("parses");
        assert_eq!(parsed.field_str(39), Some("00"));
    }

    #[test]
    fn builder_validates() {
        let mut b = MessageBuilder::new(Mti::FINANCIAL_RESPONSE);
        let err = b.set_str(4, "15000").expect_err("short fixed");
        assert_eq!(
            err.to_string(),
            "field 4 at byte 0: length 5, expected exactly 12"
        );
        let err = b.set_str(39, "0!").expect_err("class");
        assert_eq!(err.offset, 1);
        assert!(b.set_str(65, "0000000000000000").is_err());
        assert!(b.set_str(1, "0000000000000000").is_err());
        assert!(b.set_str(129, "1").is_err());
        b.set_str(39, "00")
            .expect("ok")
            .set_str(39, "05")
            .expect("ok");
        assert_eq!(b.get_str(39), Some("05"));
        b.remove(39);
        assert!(!b.has(39));
    }

    #[test]
    fn debug_masks_card_data() {
        let builder = purchase();
        let bytes = builder.to_bytes();
        let msg = Message::parse(&bytes).expect("parses");
        for text in [
            format!("{msg:?}"),
            format!("{builder:?}"),
            format!("{msg:#?}"),
        ] {
            assert!(!text.contains(PAN), "{text}");
            assert!(!text.contains(&TRACK2[..20]), "{text}");
            assert!(!text.contains(PIN_BLOCK), "{text}");
            assert!(text.contains("603456******0000"), "{text}");
            assert!(text.contains("<37 bytes masked>"), "{text}");
            assert!(text.contains("TERM0001"), "{text}");
        }
        let err = Message::parse(&bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(!format!("{err:?}").contains(PAN));
    }
}

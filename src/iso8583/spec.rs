//! Field table for ISO 8583:1987 in its ASCII form.
//!
//! Lengths and length types match pyiso8583's `default_ascii` spec field by field
//! (checked by `tests/vectors.rs` against a dump of that spec made by
//! `tools/make_vectors.py`). On the wire that is also jPOS `ISO87APackager`, except
//! where the two disagree; there we follow pyiso8583 (and the ISO 1987 standard):
//!
//! | F  | pyiso8583 / here | jPOS ISO87APackager          |
//! |----|------------------|------------------------------|
//! | 54 | LLLVAR ..240     | LLLCHAR ..120                |
//! | 55 | LLLVAR ..510     | LLLCHAR ..999                |
//! | 65 | tertiary bitmap  | IFA_BINARY(1): 2 hex chars   |
//! | 93 | an 5             | an 6                         |
//! | 96 | 16 hex chars     | IFA_BINARY(16): 32 hex chars |
//!
//! Bit 65 is rejected by the codec because the two references read it differently.
//!
//! Character classes are not checked by either reference; they come from the ISO
//! 1987 data element formats and are enforced here so that every parsed field is
//! ASCII (and printable), which keeps `field_str` infallible and logs clean.

use std::fmt;

/// How a field's length is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exactly `max_len` characters, no prefix.
    Fixed,
    /// Two ASCII digits of length, then up to `max_len` (<= 99) characters.
    LlVar,
    /// Three ASCII digits of length, then up to `max_len` (<= 999) characters.
    LllVar,
}

impl Kind {
    /// Number of ASCII digits in the length prefix.
    pub const fn prefix_len(self) -> usize {
        match self {
            Kind::Fixed => 0,
            Kind::LlVar => 2,
            Kind::LllVar => 3,
        }
    }
}

/// Which bytes a field may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `n`: ASCII digits.
    N,
    /// `an`: letters and digits; space too, since fixed `an` fields are space
    /// padded in practice (jPOS `IF_CHAR` pads with spaces).
    An,
    /// `ans`: any printable ASCII, 0x20..=0x7E.
    Ans,
    /// `b`: binary carried as hex characters, either case.
    Hex,
    /// `x+n`: 'C' (credit) or 'D' (debit), then digits.
    Amount,
    /// `z`: track 2 characters, the ISO 7813 set 0x30..=0x3F ('0'-'9', ':', ';',
    /// '<', '=', '>', '?') plus 'D', which some terminals use as the separator.
    Track,
}

impl Class {
    /// Whether `byte` may appear at position `pos` of a field of this class.
    pub const fn allows(self, pos: usize, byte: u8) -> bool {
        match self {
            Class::N => byte.is_ascii_digit(),
            Class::An => byte.is_ascii_alphanumeric() || byte == b' ',
            Class::Ans => matches!(byte, 0x20..=0x7E),
            Class::Hex => byte.is_ascii_hexdigit(),
            Class::Amount if pos == 0 => matches!(byte, b'C' | b'D'),
            Class::Amount => byte.is_ascii_digit(),
            Class::Track => matches!(byte, 0x30..=0x3F | b'D'),
        }
    }

    /// Position of the first byte not allowed in this class, if any.
    pub fn first_invalid(self, value: &[u8]) -> Option<usize> {
        value
            .iter()
            .enumerate()
            .position(|(pos, &byte)| !self.allows(pos, byte))
    }

    /// Why a byte was refused; never mentions the byte itself (card data).
    pub const fn violation(self) -> &'static str {
        match self {
            Class::N => "non-digit in numeric field",
            Class::An => "non-alphanumeric byte in alphanumeric field",
            Class::Ans => "non-printable byte in text field",
            Class::Hex => "non-hex byte in binary (hex) field",
            Class::Amount => "bad sign (C/D) or non-digit in amount field",
            Class::Track => "byte outside track character set",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Class::N => "n",
            Class::An => "an",
            Class::Ans => "ans",
            Class::Hex => "b (hex)",
            Class::Amount => "x+n",
            Class::Track => "z",
        };
        f.write_str(name)
    }
}

/// One data element of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field number; 0 is the MTI, 1 the secondary bitmap.
    pub number: u8,
    pub name: &'static str,
    pub kind: Kind,
    /// Exact length for `Fixed`, maximum for the variable kinds, in characters.
    pub max_len: u16,
    pub class: Class,
}

impl FieldSpec {
    /// The spec of field `n`, or `None` outside 0..=128.
    pub fn get(n: u8) -> Option<&'static FieldSpec> {
        ISO87A.get(usize::from(n))
    }
}

const fn f(number: u8, name: &'static str, kind: Kind, max_len: u16, class: Class) -> FieldSpec {
    FieldSpec {
        number,
        name,
        kind,
        max_len,
        class,
    }
}

use Class::{Amount, An, Ans, Hex, Track, N};
use Kind::{Fixed, LlVar, LllVar};

/// ISO 8583:1987 ASCII, indexed by field number (entry 0 describes the MTI).
pub const ISO87A: [FieldSpec; 129] = [
    f(0, "Message Type Indicator", Fixed, 4, N),
    f(1, "Bitmap, Secondary", Fixed, 16, Hex),
    f(2, "Primary Account Number (PAN)", LlVar, 19, N),
    f(3, "Processing Code", Fixed, 6, N),
    f(4, "Amount, Transaction", Fixed, 12, N),
    f(5, "Amount, Settlement", Fixed, 12, N),
    f(6, "Amount, Cardholder Billing", Fixed, 12, N),
    f(7, "Transmission Date and Time", Fixed, 10, N),
    f(8, "Amount, Cardholder Billing Fee", Fixed, 8, N),
    f(9, "Conversion Rate, Settlement", Fixed, 8, N),
    f(10, "Conversion Rate, Cardholder Billing", Fixed, 8, N),
    f(11, "System Trace Audit Number", Fixed, 6, N),
    f(12, "Time, Local Transaction", Fixed, 6, N),
    f(13, "Date, Local Transaction", Fixed, 4, N),
    f(14, "Date, Expiration", Fixed, 4, N),
    f(15, "Date, Settlement", Fixed, 4, N),
    f(16, "Date, Conversion", Fixed, 4, N),
    f(17, "Date, Capture", Fixed, 4, N),
    f(18, "Merchant Type", Fixed, 4, N),
    f(19, "Acquiring Institution Country Code", Fixed, 3, N),
    f(20, "PAN Country Code", Fixed, 3, N),
    f(21, "Forwarding Institution Country Code", Fixed, 3, N),
    f(22, "Point-of-Service Entry Mode", Fixed, 3, N),
    f(23, "PAN Sequence Number", Fixed, 3, N),
    f(24, "Network International ID (NII)", Fixed, 3, N),
    f(25, "Point-of-Service Condition Code", Fixed, 2, N),
    f(26, "Point-of-Service Capture Code", Fixed, 2, N),
    f(27, "Authorizing ID Response Length", Fixed, 1, N),
    f(28, "Amount, Transaction Fee", Fixed, 9, Amount),
    f(29, "Amount, Settlement Fee", Fixed, 9, Amount),
    f(30, "Amount, Transaction Processing Fee", Fixed, 9, Amount),
    f(31, "Amount, Settlement Processing Fee", Fixed, 9, Amount),
    f(32, "Acquiring Institution ID Code", LlVar, 11, N),
    f(33, "Forwarding Institution ID Code", LlVar, 11, N),
    f(34, "Primary Account Number, Extended", LlVar, 28, Ans),
    f(35, "Track 2 Data", LlVar, 37, Track),
    // jPOS reads F36 as LLLCHAR, so any printable byte rather than `z`.
    f(36, "Track 3 Data", LllVar, 104, Ans),
    f(37, "Retrieval Reference Number", Fixed, 12, An),
    f(38, "Authorization ID Response", Fixed, 6, An),
    f(39, "Response Code", Fixed, 2, An),
    f(40, "Service Restriction Code", Fixed, 3, An),
    f(41, "Card Acceptor Terminal ID", Fixed, 8, Ans),
    f(42, "Card Acceptor ID Code", Fixed, 15, Ans),
    f(43, "Card Acceptor Name/Location", Fixed, 40, Ans),
    f(44, "Additional Response Data", LlVar, 25, Ans),
    f(45, "Track 1 Data", LlVar, 76, Ans),
    f(46, "Additional Data - ISO", LllVar, 999, Ans),
    f(47, "Additional Data - National", LllVar, 999, Ans),
    f(48, "Additional Data - Private", LllVar, 999, Ans),
    // ISO 1987 says a3 for currency codes; numeric codes like "360" are letters
    // and digits too.
    f(49, "Currency Code, Transaction", Fixed, 3, An),
    f(50, "Currency Code, Settlement", Fixed, 3, An),
    f(51, "Currency Code, Cardholder Billing", Fixed, 3, An),
    f(52, "PIN Data", Fixed, 16, Hex),
    f(53, "Security-Related Control Information", Fixed, 16, N),
    f(54, "Additional Amounts", LllVar, 240, Ans),
    f(55, "ICC Data", LllVar, 510, Ans),
    f(56, "Reserved ISO", LllVar, 999, Ans),
    f(57, "Reserved National", LllVar, 999, Ans),
    f(58, "Reserved National", LllVar, 999, Ans),
    f(59, "Reserved National", LllVar, 999, Ans),
    f(60, "Reserved National", LllVar, 999, Ans),
    f(61, "Reserved Private", LllVar, 999, Ans),
    f(62, "Reserved Private", LllVar, 999, Ans),
    f(63, "Reserved Private", LllVar, 999, Ans),
    f(64, "Message Authentication Code", Fixed, 16, Hex),
    // Bit 65 announces a tertiary bitmap in pyiso8583; the codec refuses it.
    f(65, "Bitmap, Extended", Fixed, 16, Hex),
    f(66, "Settlement Code", Fixed, 1, N),
    f(67, "Extended Payment Code", Fixed, 2, N),
    f(68, "Receiving Institution Country Code", Fixed, 3, N),
    f(69, "Settlement Institution Country Code", Fixed, 3, N),
    f(70, "Network Management Information Code", Fixed, 3, N),
    f(71, "Message Number", Fixed, 4, N),
    f(72, "Message Number, Last", Fixed, 4, N),
    f(73, "Date, Action", Fixed, 6, N),
    f(74, "Credits, Number", Fixed, 10, N),
    f(75, "Credits, Reversal Number", Fixed, 10, N),
    f(76, "Debits, Number", Fixed, 10, N),
    f(77, "Debits, Reversal Number", Fixed, 10, N),
    f(78, "Transfer, Number", Fixed, 10, N),
    f(79, "Transfer, Reversal Number", Fixed, 10, N),
    f(80, "Inquiries, Number", Fixed, 10, N),
    f(81, "Authorizations, Number", Fixed, 10, N),
    f(82, "Credits, Processing Fee Amount", Fixed, 12, N),
    f(83, "Credits, Transaction Fee Amount", Fixed, 12, N),
    f(84, "Debits, Processing Fee Amount", Fixed, 12, N),
    f(85, "Debits, Transaction Fee Amount", Fixed, 12, N),
    f(86, "Credits, Amount", Fixed, 16, N),
    f(87, "Credits, Reversal Amount", Fixed, 16, N),
    f(88, "Debits, Amount", Fixed, 16, N),
    f(89, "Debits, Reversal Amount", Fixed, 16, N),
    f(90, "Original Data Elements", Fixed, 42, N),
    f(91, "File Update Code", Fixed, 1, An),
    f(92, "File Security Code", Fixed, 2, An),
    f(93, "Response Indicator", Fixed, 5, An),
    f(94, "Service Indicator", Fixed, 7, An),
    f(95, "Replacement Amounts", Fixed, 42, An),
    f(96, "Message Security Code", Fixed, 16, Hex),
    f(97, "Amount, Net Settlement", Fixed, 17, Amount),
    f(98, "Payee", Fixed, 25, Ans),
    f(99, "Settlement Institution ID Code", LlVar, 11, N),
    f(100, "Receiving Institution ID Code", LlVar, 11, N),
    f(101, "File Name", LlVar, 17, Ans),
    f(102, "Account ID 1", LlVar, 28, Ans),
    f(103, "Account ID 2", LlVar, 28, Ans),
    f(104, "Transaction Description", LllVar, 100, Ans),
    f(105, "Reserved for ISO Use", LllVar, 999, Ans),
    f(106, "Reserved for ISO Use", LllVar, 999, Ans),
    f(107, "Reserved for ISO Use", LllVar, 999, Ans),
    f(108, "Reserved for ISO Use", LllVar, 999, Ans),
    f(109, "Reserved for ISO Use", LllVar, 999, Ans),
    f(110, "Reserved for ISO Use", LllVar, 999, Ans),
    f(111, "Reserved for ISO Use", LllVar, 999, Ans),
    f(112, "Reserved for National Use", LllVar, 999, Ans),
    f(113, "Reserved for National Use", LllVar, 999, Ans),
    f(114, "Reserved for National Use", LllVar, 999, Ans),
    f(115, "Reserved for National Use", LllVar, 999, Ans),
    f(116, "Reserved for National Use", LllVar, 999, Ans),
    f(117, "Reserved for National Use", LllVar, 999, Ans),
    f(118, "Reserved for National Use", LllVar, 999, Ans),
    f(119, "Reserved for National Use", LllVar, 999, Ans),
    f(120, "Reserved for Private Use", LllVar, 999, Ans),
    f(121, "Reserved for Private Use", LllVar, 999, Ans),
    f(122, "Reserved for Private Use", LllVar, 999, Ans),
    f(123, "Reserved for Private Use", LllVar, 999, Ans),
    f(124, "Reserved for Private Use", LllVar, 999, Ans),
    f(125, "Reserved for Private Use", LllVar, 999, Ans),
    f(126, "Reserved for Private Use", LllVar, 999, Ans),
    f(127, "Reserved for Private Use", LllVar, 999, Ans),
    f(128, "Message Authentication Code", Fixed, 16, Hex),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_field_number() {
        for (i, spec) in ISO87A.iter().enumerate() {
            assert_eq!(usize::from(spec.number), i, "{}", spec.name);
        }
    }

    #[test]
    fn prefix_can_express_every_max_len() {
        for spec in &ISO87A {
            let limit = match spec.kind {
                Kind::Fixed => continue,
                Kind::LlVar => 99,
                Kind::LllVar => 999,
            };
            assert!(spec.max_len <= limit, "field {}", spec.number);
        }
    }

    #[test]
    fn switch_fields_match_wire_md() {
        let expect = [
            (2, LlVar, 19, N),
            (3, Fixed, 6, N),
            (4, Fixed, 12, N),
            (7, Fixed, 10, N),
            (11, Fixed, 6, N),
            (32, LlVar, 11, N),
            (35, LlVar, 37, Track),
            (37, Fixed, 12, An),
            (41, Fixed, 8, Ans),
            (42, Fixed, 15, Ans),
            (43, Fixed, 40, Ans),
            (48, LllVar, 999, Ans),
            (49, Fixed, 3, An),
            (52, Fixed, 16, Hex),
            (54, LllVar, 240, Ans),
            (70, Fixed, 3, N),
            (90, Fixed, 42, N),
            (95, Fixed, 42, An),
        ];
        for (n, kind, max_len, class) in expect {
            let spec = FieldSpec::get(n).expect("in table");
            assert_eq!(
                (spec.kind, spec.max_len, spec.class),
                (kind, max_len, class)
            );
        }
    }

    #[test]
    fn classes() {
        assert_eq!(Class::N.first_invalid(b"0123x"), Some(4));
        assert_eq!(Class::Amount.first_invalid(b"C00000100"), None);
        assert_eq!(Class::Amount.first_invalid(b"100000000"), Some(0));
        assert_eq!(Class::Track.first_invalid(b"6034560000000000=2912"), None);
        assert_eq!(Class::Track.first_invalid(b"6034D2912"), None);
        assert_eq!(Class::Hex.first_invalid(b"0aF9"), None);
        assert_eq!(Class::Ans.first_invalid(b"ok\n"), Some(2));
        assert_eq!(Class::An.first_invalid(b"AB 12"), None);
        assert_eq!(Class::An.first_invalid(b"AB-12"), Some(2));
    }
}

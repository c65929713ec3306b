//! The card number: kept whole only in memory for the request that carries it.
//! Everywhere else it is a SHA-256 (ledger, deny list) or first 6 + last 4 (people).

use sha2::{Digest, Sha256};

/// A PAN that was checked to be 12-19 decimal digits. `Debug` and `Display` mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

/// The SHA-256 of a PAN. `Debug` shows its first four bytes only: the whole hash of a
/// 16-digit PAN is reversed by trying the thousand million numbers of its BIN.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PanHash(pub [u8; 32]);

impl std::fmt::Debug for PanHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PanHash({}..)", hex::encode(&self.0[..4]))
    }
}

impl Pan {
    pub const LEN_MIN: usize = 12;
    pub const LEN_MAX: usize = 19;

    pub fn parse(digits: &str) -> Option<Pan> {
        let ok = (Self::LEN_MIN..=Self::LEN_MAX).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Pan(digits.to_string()))
    }

    /// The digits, for PIN work and hashing only. Never log this.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// First 6 and last 4, the most that may appear in logs, responses and metrics.
    pub fn masked(&self) -> String {
        mask_pan(&self.0)
    }

    /// Lower-case hex SHA-256 of the ASCII digits: the card's key in the ledger and the
    /// deny list (interfaces.md).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.hash().0)
    }

    /// The same SHA-256 as bytes: the card's key in memory.
    pub fn hash(&self) -> PanHash {
        PanHash(Sha256::digest(self.0.as_bytes()).into())
    }

    pub fn luhn_valid(&self) -> bool {
        luhn_valid(&self.0)
    }
}

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl std::fmt::Display for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

/// First 6 + `*` + last 4 of any digit string; short strings are masked whole.
pub fn mask_pan(digits: &str) -> String {
    let len = digits.len();
    if len < 11 || !digits.is_ascii() {
        return "*".repeat(len.min(19));
    }
    format!(
        "{}{}{}",
        &digits[..6],
        "*".repeat(len - 10),
        &digits[len - 4..]
    )
}

/// The Luhn (mod 10) check of ISO/IEC 7812.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The Luhn check digit that completes `body`.
pub fn luhn_check_digit(body: &str) -> char {
    for d in b'0'..=b'9' {
        let mut candidate = body.to_string();
        candidate.push(char::from(d));
        if luhn_valid(&candidate) {
            return char::from(d);
        }
    }
    '0'
}

/// Whether `text` has the form `Pan::sha256_hex` gives: 64 lower-case hex digits (how
/// the ledger names a card; checked before every write and by `ledger verify`).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_whole_pan() {
        let pan = Pan::parse("6034560000000000").unwrap();
        assert_eq!(format!("{pan:?}"), "Pan(603456******0000)");
        assert_eq!(pan.to_string(), "603456******0000");
    }

    #[test]
    fn luhn_accepts_valid_and_rejects_single_digit_errors() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        let body = "603456000000001";
        let full = format!("{body}{}", luhn_check_digit(body));
        assert!(luhn_valid(&full));
    }

    #[test]
    fn sha256_is_lower_hex_of_the_ascii_digits() {
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!(pan.sha256_hex().len(), 64);
        assert!(pan
            .sha256_hex()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(is_sha256_hex(&pan.sha256_hex()));
        assert!(!is_sha256_hex(&pan.sha256_hex().to_uppercase()));
        assert!(!is_sha256_hex(&pan.sha256_hex()[1..]));
    }
}

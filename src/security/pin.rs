//! ISO 9564-1 format-0 PIN blocks (F52) and IBM 3624 PIN-offset
//! generation/verification.
//!
//! Nothing here returns or prints PIN digits, PIN blocks, PANs or keys in an
//! error or in `Debug` output, and buffers that held clear PIN digits are
//! wiped when dropped.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::keys::{KeyError, TdesKey};

/// Shortest PIN allowed by ISO 9564 and accepted here.
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN that fits a format-0 block.
pub const MAX_PIN_LEN: usize = 12;
/// PIN length the issuer uses when it generates PINs.
pub const DEFAULT_PIN_LEN: usize = 6;

// A PAN needs 12 digits plus the check digit to fill the format-0 PAN
// field; ISO/IEC 7812 caps PANs at 19 digits.
const MIN_PAN_LEN: usize = 13;
const MAX_PAN_LEN: usize = 19;
const FILL: u8 = 0xF;

/// 16 nibbles (values 0..=15) of one 8-byte block.
type Nibbles = [u8; 16];

/// PIN processing errors. Variants carry no PIN, PIN block, PAN or key data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// A key was malformed (wrong length or non-hex).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// PIN (or requested PIN length) outside 4..=12 digits.
    #[error("PIN must be 4 to 12 digits long")]
    BadPinLength,
    /// PIN contains something other than 0-9.
    #[error("PIN must contain only decimal digits")]
    PinNotNumeric,
    /// PAN is not 13..=19 decimal digits.
    #[error("PAN must be 13 to 19 decimal digits")]
    BadPan,
    /// PIN block text is not 16 hex digits.
    #[error("PIN block must be 16 hex digits")]
    BadPinBlockHex,
    /// Control nibble is not 0: not an ISO 9564 format-0 block.
    #[error("PIN block is not ISO 9564 format 0")]
    BadPinBlockFormat,
    /// PIN length nibble outside 4..=12.
    #[error("PIN block PIN length is out of range")]
    BadPinBlockLength,
    /// A PIN digit nibble is above 9.
    #[error("PIN block contains a non-decimal PIN digit")]
    BadPinBlockDigit,
    /// A fill nibble is not F.
    #[error("PIN block fill nibbles are not F")]
    BadPinBlockFill,
    /// The block is well formed for some PAN, but not for the given one.
    #[error("PIN block does not match the PAN")]
    PinBlockPanMismatch,
    /// Decimalisation table is not 16 decimal digits.
    #[error("decimalisation table must be 16 decimal digits")]
    BadDecimalisationTable,
    /// PIN offset is not 4..=12 decimal digits.
    #[error("PIN offset must be 4 to 12 decimal digits")]
    BadOffset,
}

/// A clear PIN: 4..=12 decimal digits. `Debug` prints `Pin(****)` whatever
/// the length, equality is constant time, and the digits are wiped on drop.
#[derive(Clone)]
pub struct Pin {
    /// Digit values 0..=9; only the first `len` are meaningful.
    digits: [u8; MAX_PIN_LEN],
    len: u8,
}

impl Pin {
    /// Parses PIN digits typed by a cardholder or test client.
    pub fn new(text: &str) -> Result<Self, PinError> {
        check_pin_len(text.len())?;
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PinError::PinNotNumeric);
        }
        let values = Zeroizing::new(text.bytes().map(|c| c - b'0').collect::<Vec<u8>>());
        Self::from_digit_values(&values)
    }

    /// Number of PIN digits (4..=12).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a `Pin` holds at least 4 digits by construction.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    // `values` must already be digit values 0..=9.
    fn from_digit_values(values: &[u8]) -> Result<Self, PinError> {
        check_pin_len(values.len())?;
        if values.iter().any(|d| *d > 9) {
            return Err(PinError::PinNotNumeric);
        }
        let len = u8::try_from(values.len()).map_err(|_| PinError::BadPinLength)?;
        let mut pin = Self {
            digits: [0; MAX_PIN_LEN],
            len,
        };
        for (slot, value) in pin.digits.iter_mut().zip(values) {
            *slot = *value;
        }
        Ok(pin)
    }

    fn digit_values(&self) -> &[u8] {
        self.digits.get(..self.len()).unwrap_or_default()
    }
}

impl PartialEq for Pin {
    // Constant time in the digits, so comparing PINs leaks no prefix length.
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.digit_values().ct_eq(other.digit_values()))
    }
}

impl Eq for Pin {}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fixed mask: not even the length is shown.
        f.write_str("Pin(****)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.digits.zeroize();
        self.len.zeroize();
    }
}

impl ZeroizeOnDrop for Pin {}

fn check_pin_len(len: usize) -> Result<(), PinError> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&len) {
        Ok(())
    } else {
        Err(PinError::BadPinLength)
    }
}

/// Maps each hex digit of the IBM 3624 intermediate result to a decimal
/// digit: hex value `i` becomes `table[i]`.
///
/// Take the table from issuer configuration only: letting a request choose
/// it enables the decimalisation-table attack (Bond & Zielinski, 2003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalisationTable([u8; 16]);

impl DecimalisationTable {
    /// Parses 16 decimal digits, e.g. `"0123456789012345"`.
    pub fn parse(text: &str) -> Result<Self, PinError> {
        let bytes: &[u8; 16] = text
            .as_bytes()
            .try_into()
            .map_err(|_| PinError::BadDecimalisationTable)?;
        let mut table = [0; 16];
        for (slot, c) in table.iter_mut().zip(bytes) {
            if !c.is_ascii_digit() {
                return Err(PinError::BadDecimalisationTable);
            }
            *slot = c - b'0';
        }
        Ok(Self(table))
    }

    fn decimalise(&self, nibble: u8) -> u8 {
        self.0.get(usize::from(nibble)).copied().unwrap_or(0)
    }
}

impl Default for DecimalisationTable {
    /// The usual table "0123456789012345".
    fn default() -> Self {
        Self([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5])
    }
}

impl FromStr for DecimalisationTable {
    type Err = PinError;

    fn from_str(text: &str) -> Result<Self, PinError> {
        Self::parse(text)
    }
}

/// Parses the 16 hex digits of a PIN block (as carried in F52 text form).
pub fn parse_pin_block_hex(text: &str) -> Result<[u8; 8], PinError> {
    let mut block = [0; 8];
    hex::decode_to_slice(text, &mut block).map_err(|_| PinError::BadPinBlockHex)?;
    Ok(block)
}

/// Builds the clear ISO 9564 format-0 PIN block for `pan` and `pin`.
///
/// Returns `Result` (not a bare array) because the PAN is validated.
pub fn pin_block_format0(pan: &str, pin: &Pin) -> Result<[u8; 8], PinError> {
    let pan_field = pan_field(pan)?;
    let mut field = pin_field(pin);
    xor_nibbles(&mut field, &pan_field);
    Ok(from_nibbles(&field))
}

/// Builds a format-0 PIN block and encrypts it under the zone PIN key.
pub fn encrypt_pin_block(pan: &str, pin: &Pin, zpk: &TdesKey) -> Result<[u8; 8], PinError> {
    let clear = Zeroizing::new(pin_block_format0(pan, pin)?);
    Ok(zpk.encrypt_block(&clear))
}

/// Decrypts a format-0 PIN block under the zone PIN key and extracts the
/// PIN after checking every nibble.
///
/// Format 0 XORs the PAN into the PIN digits, so a wrong PAN is only
/// detectable when it disturbs the fill nibbles; a wrong PAN (or key) can
/// still yield a well-formed but different PIN, which verification rejects.
pub fn decrypt_pin_block(block: &[u8; 8], pan: &str, zpk: &TdesKey) -> Result<Pin, PinError> {
    let pan_field = pan_field(pan)?;
    let clear = Zeroizing::new(zpk.decrypt_block(block));
    decode_format0(&to_nibbles(&clear), &pan_field)
}

/// IBM 3624 natural PIN of `length` digits (the PIN when the offset is all
/// zeros), for PIN mailers and tests.
pub fn ibm3624_natural_pin(
    pan: &str,
    length: usize,
    pvk: &TdesKey,
    table: &DecimalisationTable,
) -> Result<Pin, PinError> {
    check_pin_len(length)?;
    let natural = natural_digits(pan, pvk, table)?;
    Pin::from_digit_values(natural.get(..length).unwrap_or_default())
}

/// IBM 3624 offset for a customer-selected PIN: (PIN - natural PIN) mod 10,
/// digit by digit. Its length equals the PIN length.
pub fn ibm3624_offset(
    pan: &str,
    pin: &Pin,
    pvk: &TdesKey,
    table: &DecimalisationTable,
) -> Result<String, PinError> {
    let natural = natural_digits(pan, pvk, table)?;
    let offset = pin
        .digit_values()
        .iter()
        .zip(natural.iter())
        .map(|(p, n)| char::from(b'0' + (p + 10 - n) % 10))
        .collect();
    Ok(offset)
}

/// Verifies `entered` against the IBM 3624 `offset`: (natural + offset)
/// mod 10 must equal the entered PIN. The offset's length is the PIN length
/// checked; an entered PIN of another length is simply wrong (`Ok(false)`).
/// The comparison is constant time.
pub fn ibm3624_verify(
    pan: &str,
    entered: &Pin,
    offset: &str,
    pvk: &TdesKey,
    table: &DecimalisationTable,
) -> Result<bool, PinError> {
    check_offset(offset)?;
    let natural = natural_digits(pan, pvk, table)?;
    let mut expected = Zeroizing::new(Vec::with_capacity(offset.len()));
    for (n, o) in natural.iter().zip(offset.bytes()) {
        expected.push((n + (o - b'0')) % 10);
    }
    Ok(bool::from(expected.ct_eq(entered.digit_values())))
}

fn check_offset(offset: &str) -> Result<(), PinError> {
    let len_ok = (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&offset.len());
    if len_ok && offset.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(PinError::BadOffset)
    }
}

/// The decimalised encryption of the validation data: its leftmost digits
/// are the natural PIN.
fn natural_digits(
    pan: &str,
    pvk: &TdesKey,
    table: &DecimalisationTable,
) -> Result<Zeroizing<Nibbles>, PinError> {
    let encrypted = Zeroizing::new(pvk.encrypt_block(&validation_data(pan)?));
    let mut digits = to_nibbles(&encrypted);
    for digit in digits.iter_mut() {
        *digit = table.decimalise(*digit);
    }
    Ok(digits)
}

/// IBM 3624 validation data: the first 16 PAN digits, right-padded with F.
fn validation_data(pan: &str) -> Result<[u8; 8], PinError> {
    let digits = pan_digits(pan)?;
    let mut nibbles = [FILL; 16];
    for (slot, c) in nibbles.iter_mut().zip(digits) {
        *slot = c - b'0';
    }
    Ok(from_nibbles(&nibbles))
}

fn pan_digits(pan: &str) -> Result<&[u8], PinError> {
    let digits = pan.as_bytes();
    let len_ok = (MIN_PAN_LEN..=MAX_PAN_LEN).contains(&digits.len());
    if len_ok && digits.iter().all(u8::is_ascii_digit) {
        Ok(digits)
    } else {
        Err(PinError::BadPan)
    }
}

/// Format-0 account number field: 0000 then the 12 rightmost PAN digits
/// excluding the check digit.
fn pan_field(pan: &str) -> Result<Nibbles, PinError> {
    let digits = pan_digits(pan)?;
    let start = digits.len().checked_sub(13).ok_or(PinError::BadPan)?;
    let account = digits.get(start..start + 12).ok_or(PinError::BadPan)?;
    let mut field = [0; 16];
    for (slot, c) in field.iter_mut().skip(4).zip(account) {
        *slot = c - b'0';
    }
    Ok(field)
}

/// Format-0 PIN field: 0, length, digits, F fill.
fn pin_field(pin: &Pin) -> Zeroizing<Nibbles> {
    let mut field = Zeroizing::new([FILL; 16]);
    field[0] = 0;
    field[1] = pin.len;
    for (slot, digit) in field.iter_mut().skip(2).zip(pin.digit_values()) {
        *slot = *digit;
    }
    field
}

/// Checks and decodes a clear format-0 block (as nibbles).
fn decode_format0(clear: &Nibbles, pan_field: &Nibbles) -> Result<Pin, PinError> {
    let mut field = Zeroizing::new(*clear);
    xor_nibbles(&mut field, pan_field);
    if field[0] != 0 {
        return Err(PinError::BadPinBlockFormat);
    }
    let len = usize::from(field[1]);
    check_pin_len(len).map_err(|_| PinError::BadPinBlockLength)?;
    let (digits, fill) = field
        .get(2..)
        .and_then(|tail| tail.split_at_checked(len))
        .ok_or(PinError::BadPinBlockLength)?;
    if digits.iter().all(|d| *d <= 9) && fill.iter().all(|n| *n == FILL) {
        return Pin::from_digit_values(digits);
    }
    Err(tail_error(clear, digits, 2 + len))
}

/// Names what is wrong with a block whose control and length nibbles were
/// fine. Nibbles 2-3 carry no PAN, so a bad digit there is a real bad digit.
/// Otherwise, if every fill nibble of the clear block equals F XOR a decimal
/// digit, the block is well formed for some other PAN: report a mismatch.
fn tail_error(clear: &Nibbles, digits: &[u8], fill_start: usize) -> PinError {
    if digits.iter().take(2).any(|d| *d > 9) {
        return PinError::BadPinBlockDigit;
    }
    let clear_fill = clear.get(fill_start..).unwrap_or_default();
    if clear_fill.iter().all(|n| (n ^ FILL) <= 9) {
        return PinError::PinBlockPanMismatch;
    }
    if digits.iter().any(|d| *d > 9) {
        PinError::BadPinBlockDigit
    } else {
        PinError::BadPinBlockFill
    }
}

fn xor_nibbles(field: &mut Nibbles, other: &Nibbles) {
    for (a, b) in field.iter_mut().zip(other) {
        *a ^= b;
    }
}

fn to_nibbles(block: &[u8; 8]) -> Zeroizing<Nibbles> {
    let mut nibbles = Zeroizing::new([0; 16]);
    for (pair, byte) in nibbles.chunks_exact_mut(2).zip(block) {
        pair.copy_from_slice(&[byte >> 4, byte & 0xF]);
    }
    nibbles
}

fn from_nibbles(nibbles: &Nibbles) -> [u8; 8] {
    let mut block = [0; 8];
    for (byte, pair) in block.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = pair.iter().fold(0, |acc, n| (acc << 4) | (n & 0xF));
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pin(text: &str) -> Pin {
        Pin::new(text).expect("test PIN")
    }

    fn key(hex_key: &str) -> TdesKey {
        TdesKey::from_hex(hex_key).expect("test key")
    }

    fn block_hex(block: &[u8; 8]) -> String {
        hex::encode_upper(block)
    }

    /// PVK used by the psec vectors below.
    fn psec_pvk() -> TdesKey {
        key("0123456789ABCDEFFEDCBA9876543210")
    }

    fn psec_table() -> DecimalisationTable {
        DecimalisationTable::parse("1234567890123456").expect("table")
    }

    // --- ISO 9564 format 0: published clear-block examples ---------------

    // Classic example (Wikipedia "ISO 9564", Format 0; also ID TECH's
    // "PIN block ISO format 0" knowledge-base page, decode shown too):
    // PIN 1234, PAN 43219876543210987 -> clear block 0412AC89ABCDEF67.
    #[test]
    fn iso0_classic_example() {
        let pan = "43219876543210987";
        let block = pin_block_format0(pan, &pin("1234")).expect("block");
        assert_eq!(block_hex(&block), "0412AC89ABCDEF67");
        let decoded = decode_format0(&to_nibbles(&block), &pan_field(pan).expect("pan"));
        assert_eq!(decoded, Ok(pin("1234")));
    }

    // Thales payShield host command manual, PIN block "Format 01" (ANSI
    // X9.8 / ISO 9564-1 format 0) example: PIN 92389, 13-digit PAN
    // 4000001234562 (check digit 2) -> 0592789FFFEDCBA9. Odd PIN length.
    #[test]
    fn iso0_thales_format01_example() {
        let block = pin_block_format0("4000001234562", &pin("92389")).expect("block");
        assert_eq!(block_hex(&block), "0592789FFFEDCBA9");
    }

    // psec (github.com/knovichikhin/psec) tests/test_pinblock.py,
    // test_encode_pinblock_iso_0: an independent implementation's vectors,
    // including a 12-digit PIN (no fill nibbles at all).
    #[test]
    fn iso0_psec_vectors() {
        let cases = [
            ("1234", "041261AAAAEDCBA9"),
            ("123456789012", "0C1261032D8226A9"),
        ];
        for (digits, expected) in cases {
            let block = pin_block_format0("5555555551234567", &pin(digits)).expect("block");
            assert_eq!(block_hex(&block), expected);
        }
    }

    // --- IBM 3624 offset: published vectors --------------------------------

    // psec tests/test_pin.py (test_generate_ibm3624_pin / _offset): PVK
    // 0123456789ABCDEFFEDCBA9876543210, table 1234567890123456, PAN
    // 1122334455667788 (all 16 digits as validation data, pad F). Natural
    // PIN 4524; PIN 1234 -> offset 7710, 0000 -> 6586, 1111 -> 7697.
    // I recomputed E_PVK(1122334455667788) = 3EB3B72576BBBE83 with OpenSSL.
    #[test]
    fn ibm3624_psec_vectors() {
        let (pvk, table, pan) = (psec_pvk(), psec_table(), "1122334455667788");
        let natural = ibm3624_natural_pin(pan, 4, &pvk, &table).expect("natural");
        assert_eq!(natural, pin("4524"));
        let cases = [
            ("4524", "0000"),
            ("1234", "7710"),
            ("0000", "6586"),
            ("1111", "7697"),
        ];
        for (digits, offset) in cases {
            let computed = ibm3624_offset(pan, &pin(digits), &pvk, &table).expect("offset");
            assert_eq!(computed, offset);
            assert_eq!(
                ibm3624_verify(pan, &pin(digits), offset, &pvk, &table),
                Ok(true)
            );
        }
    }

    // Same psec file, pan_verify_length 14: validation data
    // 11223344556677FF (short PAN, padded with F) -> natural PIN 5518.
    #[test]
    fn ibm3624_psec_short_pan_padded_with_f() {
        let natural =
            ibm3624_natural_pin("11223344556677", 4, &psec_pvk(), &psec_table()).expect("natural");
        assert_eq!(natural, pin("5518"));
    }

    // Bond & Zielinski, "Decimalisation table attacks for PIN cracking"
    // (Cambridge TR-560, 2003), worked IBM 3624 example: encrypted
    // validation data 3F7C 2201 00CA 8AB3 with table 0123456789012345 gives
    // natural PIN 3572. Numbers quoted from memory (no web access); the
    // assertion follows from the default table alone.
    #[test]
    fn default_table_decimalises_bond_zielinski_example() {
        let mut nibbles = to_nibbles(&[0x3F, 0x7C, 0x22, 0x01, 0x00, 0xCA, 0x8A, 0xB3]);
        let table = DecimalisationTable::default();
        for n in nibbles.iter_mut() {
            *n = table.decimalise(*n);
        }
        assert_eq!(nibbles[..4], [3, 5, 7, 2]);
        assert_eq!(
            table,
            DecimalisationTable::parse("0123456789012345").expect("table")
        );
    }

    // --- IBM 3624: properties ----------------------------------------------

    #[test]
    fn wrong_pin_and_wrong_length_fail_verification() {
        let (pvk, table, pan) = (psec_pvk(), DecimalisationTable::default(), "4000001234562");
        let offset = ibm3624_offset(pan, &pin("246810"), &pvk, &table).expect("offset");
        assert_eq!(offset.len(), DEFAULT_PIN_LEN);
        let verify = |digits: &str| ibm3624_verify(pan, &pin(digits), &offset, &pvk, &table);
        assert_eq!(verify("246810"), Ok(true));
        assert_eq!(verify("246811"), Ok(false));
        assert_eq!(verify("2468"), Ok(false));
        assert_eq!(verify("2468100"), Ok(false));
        let other_pan = ibm3624_verify("4000001234570", &pin("246810"), &offset, &pvk, &table);
        assert_eq!(other_pan, Ok(false));
    }

    #[test]
    fn ibm3624_rejects_bad_offset_and_pan() {
        let (pvk, table, p) = (psec_pvk(), DecimalisationTable::default(), pin("1234"));
        for offset in ["123", "1234567890123", "12a4", ""] {
            let result = ibm3624_verify("1122334455667788", &p, offset, &pvk, &table);
            assert_eq!(result, Err(PinError::BadOffset));
        }
        for pan in [
            "",
            "112233445566",
            "11223344556677889900",
            "112233445566778A",
        ] {
            assert_eq!(ibm3624_offset(pan, &p, &pvk, &table), Err(PinError::BadPan));
        }
        assert_eq!(
            ibm3624_natural_pin("1122334455667788", 13, &pvk, &table),
            Err(PinError::BadPinLength)
        );
    }

    #[test]
    fn decimalisation_table_parse_errors() {
        for text in [
            "",
            "012345678901234",
            "01234567890123456",
            "012345678901234A",
        ] {
            assert_eq!(
                DecimalisationTable::parse(text),
                Err(PinError::BadDecimalisationTable)
            );
        }
        assert_eq!(
            "0123456789012345".parse(),
            Ok(DecimalisationTable::default())
        );
    }

    // --- Encrypted blocks: properties --------------------------------------

    #[test]
    fn encrypt_then_decrypt_round_trip() {
        let zpk = key("0123456789ABCDEFFEDCBA9876543210");
        let pan = "43219876543210987";
        let block = encrypt_pin_block(pan, &pin("1234"), &zpk).expect("encrypt");
        assert_eq!(
            zpk.decrypt_block(&block),
            [0x04, 0x12, 0xAC, 0x89, 0xAB, 0xCD, 0xEF, 0x67]
        );
        assert_eq!(decrypt_pin_block(&block, pan, &zpk), Ok(pin("1234")));
    }

    #[test]
    fn wrong_key_gives_error_or_other_pin() {
        let zpk = key("0123456789ABCDEFFEDCBA9876543210");
        let wrong = key("FEDCBA98765432100123456789ABCDEF");
        let pan = "4000001234562";
        let block = encrypt_pin_block(pan, &pin("92389"), &zpk).expect("encrypt");
        match decrypt_pin_block(&block, pan, &wrong) {
            Ok(other) => assert_ne!(other, pin("92389")),
            Err(err) => assert_ne!(err, PinError::BadPan),
        }
    }

    // Changing the PAN digit before the check digit flips a fill nibble.
    #[test]
    fn wrong_pan_is_reported_as_mismatch() {
        let zpk = key("0123456789ABCDEFFEDCBA9876543210");
        let block = encrypt_pin_block("4000001234562", &pin("1234"), &zpk).expect("encrypt");
        let result = decrypt_pin_block(&block, "4000001234570", &zpk);
        assert_eq!(result, Err(PinError::PinBlockPanMismatch));
    }

    // Structure errors, built from clear blocks with PAN field all zeros
    // (the check digit is excluded, so this PAN contributes nothing).
    #[test]
    fn structure_errors_are_named() {
        let zero_pan = pan_field("0000000000000").expect("pan");
        let cases = [
            ("141234FFFFFFFFFF", PinError::BadPinBlockFormat),
            ("031234FFFFFFFFFF", PinError::BadPinBlockLength),
            ("0D1234FFFFFFFFFF", PinError::BadPinBlockLength),
            ("041A34FFFFFFFFFF", PinError::BadPinBlockDigit),
            // F^E = 1 is a decimal PAN digit: well formed for another PAN.
            ("041234FFFFFFFFFE", PinError::PinBlockPanMismatch),
            // F^0 = F is no PAN digit, so this fill is simply bad.
            ("041234FFFFFFFFF0", PinError::BadPinBlockFill),
            ("04123AFFFFFFFFF0", PinError::BadPinBlockDigit),
        ];
        for (clear_hex, expected) in cases {
            let clear = parse_pin_block_hex(clear_hex).expect("hex");
            let result = decode_format0(&to_nibbles(&clear), &zero_pan);
            assert_eq!(result, Err(expected), "{clear_hex}");
        }
    }

    #[test]
    fn parse_pin_block_hex_checks_input() {
        let block = parse_pin_block_hex("0412ac89ABCDEF67").expect("hex");
        assert_eq!(block_hex(&block), "0412AC89ABCDEF67");
        for text in [
            "",
            "0412AC89ABCDEF6",
            "0412AC89ABCDEF677",
            "0412AC89ABCDEF6G",
        ] {
            assert_eq!(parse_pin_block_hex(text), Err(PinError::BadPinBlockHex));
        }
    }

    #[test]
    fn pin_and_pan_validation() {
        assert_eq!(Pin::new("123").err(), Some(PinError::BadPinLength));
        assert_eq!(
            Pin::new("1234567890123").err(),
            Some(PinError::BadPinLength)
        );
        assert_eq!(Pin::new("12a4").err(), Some(PinError::PinNotNumeric));
        // 12 bytes of UTF-8, none of them ASCII digits.
        assert_eq!(Pin::new("１２３４").err(), Some(PinError::PinNotNumeric));
        assert_eq!(pin("123456789012").len(), MAX_PIN_LEN);
        assert!(!pin("1234").is_empty());
        for pan in ["", "400000123456", "40000012345678901234", "400000123456A"] {
            assert_eq!(pin_block_format0(pan, &pin("1234")), Err(PinError::BadPan));
        }
    }

    // --- No secrets in Debug output or errors ------------------------------

    #[test]
    fn pin_debug_is_masked() {
        for digits in ["1234", "987654321098"] {
            let shown = format!("{:?} {:#?}", pin(digits), pin(digits));
            assert_eq!(shown, "Pin(****) Pin(****)");
            assert!(!shown.contains(digits));
        }
    }

    #[test]
    fn errors_carry_no_secrets() {
        let zpk = key("0123456789ABCDEFFEDCBA9876543210");
        let pan = "4000001234562";
        let block = encrypt_pin_block(pan, &pin("1234"), &zpk).expect("encrypt");
        let errors = [
            decrypt_pin_block(&block, "4000001234570", &zpk).err(),
            Pin::new("12a4").err(),
            pin_block_format0("40000012345A2", &pin("1234")).err(),
            parse_pin_block_hex("0412AC89ABCDEF6G").err(),
            TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321Z")
                .err()
                .map(PinError::from),
        ];
        for err in errors.into_iter().flatten() {
            let text = format!("{err} {err:?}");
            for secret in [
                "1234",
                "4000001",
                "0412AC",
                "0123456789",
                &block_hex(&block),
            ] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    // --- Property tests ------------------------------------------------------

    proptest! {
        #[test]
        fn decrypt_arbitrary_block_never_panics(
            block in any::<[u8; 8]>(),
            key_bytes in any::<[u8; 16]>(),
            pan in "[0-9]{0,21}|\\PC{0,21}",
        ) {
            let zpk = TdesKey::from_bytes(&key_bytes).expect("16 bytes");
            let _ = decrypt_pin_block(&block, &pan, &zpk);
            let _ = decrypt_pin_block(&block, "4000001234562", &zpk);
        }

        #[test]
        fn block_round_trip(digits in "[0-9]{4,12}", pan in "[0-9]{13,19}", k in any::<[u8; 16]>()) {
            let zpk = TdesKey::from_bytes(&k).expect("16 bytes");
            let p = pin(&digits);
            let block = encrypt_pin_block(&pan, &p, &zpk).expect("encrypt");
            prop_assert_eq!(decrypt_pin_block(&block, &pan, &zpk), Ok(p));
        }

        #[test]
        fn offset_round_trip(digits in "[0-9]{4,12}", pan in "[0-9]{13,19}", k in any::<[u8; 16]>()) {
            let pvk = TdesKey::from_bytes(&k).expect("16 bytes");
            let table = DecimalisationTable::default();
            let offset = ibm3624_offset(&pan, &pin(&digits), &pvk, &table).expect("offset");
            prop_assert_eq!(offset.len(), digits.len());
            prop_assert_eq!(ibm3624_verify(&pan, &pin(&digits), &offset, &pvk, &table), Ok(true));
        }

        #[test]
        fn hex_parsers_never_panic(text in "\\PC{0,40}") {
            let _ = parse_pin_block_hex(&text);
            let _ = TdesKey::from_hex(&text);
            let _ = DecimalisationTable::parse(&text);
            let _ = Pin::new(&text);
        }
    }
}

//! Double-length (2-key) triple-DES keys, as used for zone PIN keys (ZPK)
//! and PIN verification keys (PVK).
//!
//! Parity: DES ignores the low bit of every key byte, so a key is accepted
//! whatever its parity bits are; two keys that differ only in parity bits are
//! the same key and have the same KCV. Enforcing odd parity belongs to key
//! import/ceremony tooling, not to the code that uses the key.
//!
//! A key whose two halves are equal degenerates to single DES. It is accepted
//! (the published single-DES test vectors rely on that), so key loading must
//! reject such keys if policy requires it.

use std::fmt;

use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde2;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of a double-length TDES key.
pub const TDES_KEY_LEN: usize = 16;

/// Why a key could not be built. Never carries key material, only lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Raw key was not 16 bytes.
    #[error("TDES key must be 16 bytes, got {0}")]
    BadLength(usize),
    /// Hex key was not 32 characters.
    #[error("TDES key hex must be 32 hex digits, got length {0}")]
    BadHexLength(usize),
    /// Hex key contained a character outside 0-9, a-f, A-F.
    #[error("TDES key hex contains a non-hex character")]
    BadHex,
}

/// A 2-key TDES key (K1 K2, EDE: E_K1(D_K2(E_K1(x)))).
///
/// `Debug` and `Display` show only the key check value. Kept only as its key schedule,
/// expanded once: a PIN transaction uses two keys, and expanding them for every block
/// was 1.7% of the switch's CPU (benches/profile.sh). The schedule is wiped on drop (the
/// `des` crate's `zeroize` feature); the key bytes as soon as it is expanded.
#[derive(Clone)]
pub struct TdesKey {
    cipher: TdesEde2,
}

impl TdesKey {
    /// Builds a key from exactly 16 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != TDES_KEY_LEN {
            return Err(KeyError::BadLength(bytes.len()));
        }
        let mut key = [0; TDES_KEY_LEN];
        key.copy_from_slice(bytes);
        Ok(Self::expand(&mut key))
    }

    /// Builds a key from 32 hex digits (either case).
    pub fn from_hex(hex_key: &str) -> Result<Self, KeyError> {
        if hex_key.len() != 2 * TDES_KEY_LEN {
            return Err(KeyError::BadHexLength(hex_key.len()));
        }
        // Decode into one array, wiped on every path (an error included).
        let mut key = [0; TDES_KEY_LEN];
        let decoded = hex::decode_to_slice(hex_key, &mut key).map_err(|_| KeyError::BadHex);
        if let Err(e) = decoded {
            key.zeroize();
            return Err(e);
        }
        Ok(Self::expand(&mut key))
    }

    /// Expands the schedule and wipes the bytes it came from (an array is `Copy`: it is
    /// taken by reference so that no copy outlives this).
    fn expand(bytes: &mut [u8; TDES_KEY_LEN]) -> Self {
        let key = Self {
            cipher: TdesEde2::new((&*bytes).into()),
        };
        bytes.zeroize();
        key
    }

    /// Key check value: first 3 bytes of the encryption of a zero block,
    /// as 6 upper-case hex digits. Safe to log and compare between parties.
    pub fn kcv(&self) -> String {
        let zero_block = self.encrypt_block(&[0; 8]);
        hex::encode_upper(zero_block.get(..3).unwrap_or_default())
    }

    /// TDES-EDE encryption of one 8-byte block (ECB, no padding).
    pub fn encrypt_block(&self, block: &[u8; 8]) -> [u8; 8] {
        let mut out = *block;
        self.cipher.encrypt_block((&mut out).into());
        out
    }

    /// TDES-EDE decryption of one 8-byte block (ECB, no padding).
    pub fn decrypt_block(&self, block: &[u8; 8]) -> [u8; 8] {
        let mut out = *block;
        self.cipher.decrypt_block((&mut out).into());
        out
    }
}

impl fmt::Debug for TdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TdesKey(kcv={})", self.kcv())
    }
}

impl fmt::Display for TdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kcv={}", self.kcv())
    }
}

impl ZeroizeOnDrop for TdesKey {}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hex_block: &str) -> [u8; 8] {
        let mut out = [0; 8];
        hex::decode_to_slice(hex_block, &mut out).expect("test block hex");
        out
    }

    fn key(hex_key: &str) -> TdesKey {
        TdesKey::from_hex(hex_key).expect("test key hex")
    }

    // FIPS 81 (DES Modes of Operation), Appendix B, ECB example: key
    // 0123456789ABCDEF, first plaintext block "Now is t" -> 3FA40E8A984D4815.
    // With K1 = K2, TDES-EDE equals single DES, so the DES vector applies.
    // (Also cross-checked here with `openssl enc -des-ecb`.)
    #[test]
    fn fips81_ecb_now_is_t() {
        let k = key("0123456789ABCDEF0123456789ABCDEF");
        let ct = k.encrypt_block(&block("4E6F772069732074"));
        assert_eq!(ct, block("3FA40E8A984D4815"));
        assert_eq!(k.decrypt_block(&ct), block("4E6F772069732074"));
    }

    // NIST SP 800-20, Table A.1 (variable plaintext known answer test),
    // round 1: key 0101010101010101, plaintext 8000000000000000 ->
    // 95F8A5E5DD31D900. K1 = K2 again reduces TDES to DES.
    #[test]
    fn sp800_20_variable_plaintext_round1() {
        let k = key("01010101010101010101010101010101");
        let ct = k.encrypt_block(&block("8000000000000000"));
        assert_eq!(ct, block("95F8A5E5DD31D900"));
        assert_eq!(k.decrypt_block(&ct), block("8000000000000000"));
    }

    // Genuine 2-key TDES KAT (K1 != K2): the industry test key
    // 0123456789ABCDEF FEDCBA9876543210 encrypts the zero block to
    // 08D7B4FB629D0885 (KCV "08D7B4"), the value quoted with that key in
    // terminal/HSM vendor samples. Not taken from a NIST document; verified
    // independently with `openssl enc -des-ede-ecb`.
    #[test]
    fn two_key_tdes_zero_block_and_kcv() {
        let k = key("0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(k.encrypt_block(&[0; 8]), block("08D7B4FB629D0885"));
        assert_eq!(k.decrypt_block(&block("08D7B4FB629D0885")), [0; 8]);
        assert_eq!(k.kcv(), "08D7B4");
    }

    // KCV of the classic DES test key 0123456789ABCDEF is D5D44F (zero block
    // -> D5D44FF720683D0D), widely quoted in KCV examples; verified with
    // `openssl enc -des-ecb`.
    #[test]
    fn kcv_of_single_des_test_key() {
        assert_eq!(key("0123456789ABCDEF0123456789ABCDEF").kcv(), "D5D44F");
    }

    // Parity bits (low bit of each byte) are ignored by DES, so flipping
    // them must not change the key: documents "accept any parity".
    #[test]
    fn parity_bits_are_ignored() {
        let odd = key("0123456789ABCDEFFEDCBA9876543210");
        let even = key("0022446688AACCEEFFDDBB9977553311");
        assert_eq!(odd.kcv(), even.kcv());
    }

    #[test]
    fn lower_case_hex_is_accepted() {
        assert_eq!(key("0123456789abcdeffedcba9876543210").kcv(), "08D7B4");
    }

    #[test]
    fn bad_hex_and_lengths_are_rejected() {
        assert_eq!(
            TdesKey::from_hex("0123").err(),
            Some(KeyError::BadHexLength(4))
        );
        assert_eq!(
            TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321G").err(),
            Some(KeyError::BadHex)
        );
        // 32 bytes of text but not 32 ASCII hex digits.
        assert_eq!(
            TdesKey::from_hex("é123456789ABCDEFFEDCBA987654321").err(),
            Some(KeyError::BadHex)
        );
        assert_eq!(
            TdesKey::from_bytes(&[0; 8]).err(),
            Some(KeyError::BadLength(8))
        );
        assert!(TdesKey::from_bytes(&[0; 16]).is_ok());
    }

    #[test]
    fn debug_and_display_show_only_kcv() {
        let hex_key = "0123456789ABCDEFFEDCBA9876543210";
        let k = key(hex_key);
        let shown = [format!("{k:?}"), format!("{k}"), format!("{k:#?}")];
        for text in shown {
            assert!(text.contains("08D7B4"), "{text}");
            assert!(!text.to_uppercase().contains("0123456789ABCDEF"));
            assert!(!text.to_uppercase().contains("FEDCBA9876543210"));
        }
    }

    #[test]
    fn errors_do_not_echo_key_text() {
        let bad = "0123456789ABCDEFFEDCBA987654321Z";
        let err = TdesKey::from_hex(bad).expect_err("non-hex");
        assert!(!err.to_string().contains("0123456789"));
        assert!(!format!("{err:?}").contains("0123456789"));
    }
}

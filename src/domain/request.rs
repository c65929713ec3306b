//! A request as the switch understands it, whatever network it came from.

use super::money::Purse;
use super::pan::{Pan, PanHash};

/// What kind of message, from its MTI (wire.md, "Messages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// 0100: place a hold.
    Authorisation,
    /// 0200: debit now, or balance inquiry.
    Financial,
    /// 0220/0221: completion of a hold (with F90) or an offline-approved advice.
    Advice,
    /// 0400/0401.
    ReversalRequest,
    /// 0420/0421.
    ReversalAdvice,
    /// 0800.
    NetworkManagement,
}

impl MessageClass {
    pub fn is_reversal(self) -> bool {
        matches!(
            self,
            MessageClass::ReversalRequest | MessageClass::ReversalAdvice
        )
    }
}

/// Transaction type, F3 digits 1-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnType {
    Purchase,
    Withdrawal,
    Refund,
    BalanceInquiry,
}

impl TxnType {
    pub fn from_code(code: &str) -> Option<TxnType> {
        match code {
            "00" => Some(TxnType::Purchase),
            "01" => Some(TxnType::Withdrawal),
            "20" => Some(TxnType::Refund),
            "31" => Some(TxnType::BalanceInquiry),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            TxnType::Purchase => "00",
            TxnType::Withdrawal => "01",
            TxnType::Refund => "20",
            TxnType::BalanceInquiry => "31",
        }
    }

    /// Money leaves the purse.
    pub fn is_debit(self) -> bool {
        matches!(self, TxnType::Purchase | TxnType::Withdrawal)
    }
}

/// Which purse F3 names: a purse, the channel's order (`00`), or something unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChoice {
    ChannelDefault,
    Purse(Purse),
    Unknown,
}

impl AccountChoice {
    pub fn from_code(code: &str) -> AccountChoice {
        match code {
            "00" => AccountChoice::ChannelDefault,
            _ => Purse::from_code(code).map_or(AccountChoice::Unknown, AccountChoice::Purse),
        }
    }
}

/// The idempotency key of wire.md: (F32, F41, F11, F7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    pub acquirer: String,
    pub terminal: String,
    pub stan: String,
    pub transmitted: String,
}

/// The original a reversal or completion names in F90.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalData {
    pub mti: String,
    pub stan: String,
    pub transmitted: String,
    pub acquirer: String,
}

/// A parsed, format-checked request. Business checks (card, limits, funds) are the
/// policy's; this only says what was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub class: MessageClass,
    /// The MTI as received (written to the ledger).
    pub mti: String,
    /// The repeat flag of 0221/0401/0421.
    pub repeat: bool,
    pub key: RequestKey,
    /// SHA-256 over the message without the MTI's repeat digit: "same content" of wire.md.
    pub content_sha: [u8; 32],
    /// F3 type; `None` when the code is not one the switch knows (answered 12).
    pub txn_type: Option<TxnType>,
    pub from_account: AccountChoice,
    pub to_account: AccountChoice,
    /// F4 as sent, in the link's exponent.
    pub amount_wire: u64,
    pub currency: Option<String>,
    pub pan: Option<Pan>,
    /// SHA-256 of the PAN, computed at the edge so the single writer does not.
    pub card_sha: Option<PanHash>,
    /// YYMM from F14 or track 2.
    pub expiry: Option<u16>,
    pub mcc: Option<u16>,
    pub rrn: Option<String>,
    /// F42: merchant, provider or operator id.
    pub acceptor_id: Option<String>,
    /// F52 as its 16 hex characters.
    pub pin_block: Option<PinBlock>,
    pub private: PrivateData,
    pub original: Option<OriginalData>,
    /// F95 first 12 digits: what was actually completed, in the link's exponent.
    pub replacement_amount_wire: Option<u64>,
}

/// F48 keys the switch uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateData {
    pub service: Option<String>,
    pub route: Option<String>,
    pub bus: Option<String>,
    pub tap: Option<String>,
}

/// F52 as received: an encrypted PIN block. `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PinBlock(pub [u8; 8]);

impl std::fmt::Debug for PinBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinBlock(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_request_shows_neither_pan_nor_pin_block() {
        let request = Request {
            class: MessageClass::Financial,
            mti: "0200".into(),
            repeat: false,
            key: RequestKey {
                acquirer: "1".into(),
                terminal: "T".into(),
                stan: "1".into(),
                transmitted: "1".into(),
            },
            content_sha: [0; 32],
            txn_type: Some(TxnType::Purchase),
            from_account: AccountChoice::ChannelDefault,
            to_account: AccountChoice::ChannelDefault,
            amount_wire: 1,
            currency: None,
            pan: Pan::parse("6034561234567897"),
            card_sha: Pan::parse("6034561234567897").map(|p| p.hash()),
            expiry: None,
            mcc: None,
            rrn: None,
            acceptor_id: None,
            pin_block: Some(PinBlock([0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89])),
            private: PrivateData::default(),
            original: None,
            replacement_amount_wire: None,
        };
        let text = format!("{request:?}");
        assert!(!text.contains("6034561234567897"));
        assert!(!text.contains("171, 205") && !text.to_lowercase().contains("abcdef"));
        assert!(text.contains("603456******7897") && text.contains("PinBlock(****)"));
        let hash = Pan::parse("6034561234567897").expect("pan").sha256_hex();
        assert!(!text.contains(&hash) && text.contains(&format!("PanHash({}..)", &hash[..8])));
    }
}

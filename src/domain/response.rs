//! The switch's answer, before the edge writes it as ISO 8583.

use super::money::Purse;

/// F39 response codes (wire.md). The names say when each is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseCode {
    Approved,
    AcquirerNotAllowed,
    DoNotHonour,
    InvalidTransaction,
    InvalidAmount,
    UnknownCard,
    OriginalNotFound,
    FormatError,
    LostCard,
    StolenCard,
    InsufficientFunds,
    ExpiredCard,
    WrongPin,
    NotPermittedToCard,
    NotPermittedToTerminal,
    AmountLimit,
    CardBlocked,
    FrequencyLimit,
    PinTriesExceeded,
    LedgerUnavailable,
    Duplicate,
    SystemMalfunction,
}

impl ResponseCode {
    pub const ALL: [ResponseCode; 22] = [
        ResponseCode::Approved,
        ResponseCode::AcquirerNotAllowed,
        ResponseCode::DoNotHonour,
        ResponseCode::InvalidTransaction,
        ResponseCode::InvalidAmount,
        ResponseCode::UnknownCard,
        ResponseCode::OriginalNotFound,
        ResponseCode::FormatError,
        ResponseCode::LostCard,
        ResponseCode::StolenCard,
        ResponseCode::InsufficientFunds,
        ResponseCode::ExpiredCard,
        ResponseCode::WrongPin,
        ResponseCode::NotPermittedToCard,
        ResponseCode::NotPermittedToTerminal,
        ResponseCode::AmountLimit,
        ResponseCode::CardBlocked,
        ResponseCode::FrequencyLimit,
        ResponseCode::PinTriesExceeded,
        ResponseCode::LedgerUnavailable,
        ResponseCode::Duplicate,
        ResponseCode::SystemMalfunction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::Approved => "00",
            ResponseCode::AcquirerNotAllowed => "03",
            ResponseCode::DoNotHonour => "05",
            ResponseCode::InvalidTransaction => "12",
            ResponseCode::InvalidAmount => "13",
            ResponseCode::UnknownCard => "14",
            ResponseCode::OriginalNotFound => "25",
            ResponseCode::FormatError => "30",
            ResponseCode::LostCard => "41",
            ResponseCode::StolenCard => "43",
            ResponseCode::InsufficientFunds => "51",
            ResponseCode::ExpiredCard => "54",
            ResponseCode::WrongPin => "55",
            ResponseCode::NotPermittedToCard => "57",
            ResponseCode::NotPermittedToTerminal => "58",
            ResponseCode::AmountLimit => "61",
            ResponseCode::CardBlocked => "62",
            ResponseCode::FrequencyLimit => "65",
            ResponseCode::PinTriesExceeded => "75",
            ResponseCode::LedgerUnavailable => "91",
            ResponseCode::Duplicate => "94",
            ResponseCode::SystemMalfunction => "96",
        }
    }

    pub fn from_str_code(code: &str) -> Option<ResponseCode> {
        ResponseCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn is_approved(self) -> bool {
        self == ResponseCode::Approved
    }
}

/// F54 amount type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountType {
    Ledger,
    Available,
}

impl AmountType {
    pub fn code(self) -> &'static str {
        match self {
            AmountType::Ledger => "01",
            AmountType::Available => "02",
        }
    }
}

/// One F54 entry, in minor units; the edge converts to the link's exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub purse: Purse,
    pub amount_type: AmountType,
    pub amount_minor: i64,
}

/// What goes back: F39, F38 on approvals, F54 where the request asks for balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: ResponseCode,
    pub approval_code: Option<String>,
    pub balances: Vec<Balance>,
}

impl Response {
    pub fn declined(code: ResponseCode) -> Response {
        Response {
            code,
            approval_code: None,
            balances: Vec::new(),
        }
    }

    /// The compact form the ledger keeps so a retry gets the same F54 byte for byte:
    /// `PPTTSAMOUNT` entries joined by `;` (purse, type, sign, minor units), written
    /// into `out` in place of what it held (its buffer is reused).
    pub fn write_balances_text(&self, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        for (i, b) in self.balances.iter().enumerate() {
            let separator = if i == 0 { "" } else { ";" };
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "{separator}{}{}{}",
                b.purse.code(),
                b.amount_type.code(),
                b.amount_minor
            );
        }
    }

    pub fn parse_balances_text(text: &str) -> Vec<Balance> {
        text.split(';')
            .filter_map(|entry| {
                let purse = Purse::from_code(entry.get(0..2)?)?;
                let amount_type = match entry.get(2..4)? {
                    "01" => AmountType::Ledger,
                    "02" => AmountType::Available,
                    _ => return None,
                };
                let amount_minor = entry.get(4..)?.parse().ok()?;
                Some(Balance {
                    purse,
                    amount_type,
                    amount_minor,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_round_trip_their_wire_text() {
        for code in ResponseCode::ALL {
            assert_eq!(ResponseCode::from_str_code(code.as_str()), Some(code));
        }
    }

    #[test]
    fn balances_text_round_trips_including_negative() {
        let response = Response {
            code: ResponseCode::Approved,
            approval_code: Some("123456".into()),
            balances: vec![
                Balance {
                    purse: Purse::Cash,
                    amount_type: AmountType::Available,
                    amount_minor: 75_000_000,
                },
                Balance {
                    purse: Purse::Transport,
                    amount_type: AmountType::Available,
                    amount_minor: -350_000,
                },
            ],
        };
        let mut text = String::from("left over");
        response.write_balances_text(&mut text);
        assert_eq!(Response::parse_balances_text(&text), response.balances);
    }
}

//! Money: integer minor units of IDR inside, `rust_decimal` at the edges, never floats.

use rust_decimal::Decimal;

/// IDR minor units per rupiah (ISO 4217 exponent 2).
pub const MINOR_PER_RUPIAH: i64 = 100;

/// Rupiah (decimals allowed, at most two places) to minor units. `None` when the value
/// has finer precision than a sen or does not fit in i64.
pub fn rupiah_to_minor(rupiah: Decimal) -> Option<i64> {
    let minor = rupiah.checked_mul(Decimal::from(MINOR_PER_RUPIAH))?;
    if minor.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(minor.trunc()).ok()
}

/// Minor units as a rupiah decimal with two places, for CSV and JSON.
pub fn minor_to_rupiah(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

/// A wire amount (F4, n12 digits) in the link's exponent to minor units.
/// `None` when it does not fit.
pub fn wire_to_minor(units: u64, exponent: u32) -> Option<i64> {
    let factor: u64 = match exponent {
        0 => 100,
        2 => 1,
        _ => return None,
    };
    i64::try_from(units.checked_mul(factor)?).ok()
}

/// Minor units to the link's exponent, truncated toward zero (wire.md, F54).
pub fn minor_to_wire(minor: i64, exponent: u32) -> i64 {
    match exponent {
        0 => minor / 100,
        _ => minor,
    }
}

/// The five purses of a family wallet. The discriminant is the index into a wallet's
/// balance arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purse {
    Cash = 0,
    Food = 1,
    Health = 2,
    Education = 3,
    Transport = 4,
}

impl Purse {
    pub const ALL: [Purse; 5] = [
        Purse::Cash,
        Purse::Food,
        Purse::Health,
        Purse::Education,
        Purse::Transport,
    ];
    pub const COUNT: usize = 5;

    pub fn index(self) -> usize {
        self as usize
    }

    /// The account-type code of F3 digits 3-4 and F54 (wire.md).
    pub fn code(self) -> &'static str {
        match self {
            Purse::Cash => "91",
            Purse::Food => "92",
            Purse::Health => "93",
            Purse::Education => "94",
            Purse::Transport => "95",
        }
    }

    pub fn from_code(code: &str) -> Option<Purse> {
        Purse::ALL.into_iter().find(|p| p.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Purse::Cash => "cash",
            Purse::Food => "food",
            Purse::Health => "health",
            Purse::Education => "education",
            Purse::Transport => "transport",
        }
    }

    pub fn from_name(name: &str) -> Option<Purse> {
        Purse::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn rupiah_with_sen_converts_exactly_and_rejects_finer() {
        assert_eq!(
            rupiah_to_minor(Decimal::from_str("750000.00").unwrap()),
            Some(75_000_000)
        );
        assert_eq!(rupiah_to_minor(Decimal::from_str("0.01").unwrap()), Some(1));
        assert_eq!(rupiah_to_minor(Decimal::from_str("0.001").unwrap()), None);
    }

    #[test]
    fn wire_amounts_follow_the_link_exponent_and_truncate_back() {
        assert_eq!(wire_to_minor(138_983, 0), Some(13_898_300));
        assert_eq!(wire_to_minor(138_983, 2), Some(138_983));
        assert_eq!(minor_to_wire(13_898_399, 0), 138_983);
        assert_eq!(minor_to_wire(-150, 0), -1);
        assert_eq!(wire_to_minor(u64::MAX, 0), None);
    }
}

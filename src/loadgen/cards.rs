//! The cards the load uses, with real PIN blocks: either the synthetic province of
//! `multiguna demo` / `multiguna province` regenerated from its size and seed, or a
//! beneficiaries CSV whose PINs are recovered from the IBM 3624 offsets with the
//! configured PIN verification key (test keys only make that possible; it is a
//! load generator's shortcut, not something a switch does).

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use crate::config::Config;
use crate::security::keys::TdesKey;
use crate::security::pin::{encrypt_pin_block, ibm3624_offset, DecimalisationTable, Pin};

/// Acquirers whose terminals send PIN blocks (ATM, minimarket, clinic and school links).
pub const PIN_ACQUIRERS: [&str; 3] = ["360001", "360002", "360003"];

/// A card and its PIN block under each of `PIN_ACQUIRERS`' zone PIN keys, computed
/// once: a format-0 block depends only on PAN, PIN and key, and encrypting per request
/// would spend the shared cores on the load generator instead of the switch.
pub struct Card {
    pub pan: String,
    pub pin_blocks: Vec<String>,
}

/// Cards plus the first clinic and school provider ids (F42), when known.
pub struct CardSet {
    pub cards: Vec<Card>,
    pub providers: (Option<String>, Option<String>),
}

/// The province `write_province(config, _, families, seed)` makes: same cards, same PINs.
pub fn from_province(config: &Config, families: u32, seed: u64) -> anyhow::Result<CardSet> {
    if families == 0 {
        bail!("--province must be at least 1 family");
    }
    let dir = tempfile::tempdir()?;
    let demo = crate::demo::write_province(config, dir.path(), families, seed)?;
    let pairs = demo.into_iter().map(|c| (c.pan, c.pin)).collect();
    Ok(CardSet {
        cards: with_pin_blocks(config, pairs)?,
        providers: providers_in(dir.path())?,
    })
}

/// Cards of a beneficiaries CSV; providers from a `providers.csv` beside it, if any.
pub fn from_csv(config: &Config, file: &Path) -> anyhow::Result<CardSet> {
    let pvk = TdesKey::from_hex(&config.security.pin_verification_key)?;
    let table = DecimalisationTable::parse(&config.security.decimalisation_table)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no {name} column", file.display()))
    };
    let (pan_at, offset_at) = (column("pan")?, column("pin_offset")?);
    let mut pairs = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row?;
        let field = |at: usize| row.get(at).unwrap_or("").trim().to_string();
        let (pan, offset) = (field(pan_at), field(offset_at));
        let pin = pin_from_offset(&pan, &offset, &pvk, &table)
            .with_context(|| format!("{} line {}", file.display(), i + 2))?;
        pairs.push((pan, pin));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    Ok(CardSet {
        cards: with_pin_blocks(config, pairs)?,
        providers: providers_in(dir)?,
    })
}

/// IBM 3624: PIN = natural PIN + offset, digit by digit mod 10. The natural PIN is
/// read back from the offset of an all-zero PIN, which is its negation.
fn pin_from_offset(
    pan: &str,
    offset: &str,
    pvk: &TdesKey,
    table: &DecimalisationTable,
) -> anyhow::Result<String> {
    let zeros = Pin::new(&"0".repeat(offset.len()))?;
    let negated = ibm3624_offset(pan, &zeros, pvk, table)?;
    offset
        .bytes()
        .zip(negated.bytes())
        .map(|(o, z)| {
            if !o.is_ascii_digit() {
                bail!("pin_offset must be digits");
            }
            let natural = (10 - (z - b'0')) % 10;
            Ok(char::from(b'0' + (natural + o - b'0') % 10))
        })
        .collect()
}

pub fn with_pin_blocks(config: &Config, pairs: Vec<(String, String)>) -> anyhow::Result<Vec<Card>> {
    let mut keys = Vec::new();
    for id in PIN_ACQUIRERS {
        let link = config
            .acquirers
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| anyhow!("config has no acquirer {id}"))?;
        keys.push(TdesKey::from_hex(&link.zone_pin_key).context("zone_pin_key")?);
    }
    pairs
        .into_iter()
        .map(|(pan, pin)| {
            let pin = Pin::new(&pin)?;
            let pin_blocks = keys
                .iter()
                .map(|zpk| Ok(hex::encode_upper(encrypt_pin_block(&pan, &pin, zpk)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Card { pan, pin_blocks })
        })
        .collect()
}

/// First clinic and first school of `dir/providers.csv` (`provider_id,name,channel`).
pub fn providers_in(dir: &Path) -> anyhow::Result<(Option<String>, Option<String>)> {
    let path = dir.join("providers.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok((None, None));
    };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let (mut clinic, mut school) = (None, None);
    for row in reader.records() {
        let row = row.with_context(|| format!("{}", path.display()))?;
        let (id, channel) = (row.get(0).unwrap_or("").trim(), row.get(2).unwrap_or(""));
        match channel.trim() {
            "clinic" if clinic.is_none() => clinic = Some(id.to_string()),
            "school" if school.is_none() => school = Some(id.to_string()),
            _ => {}
        }
    }
    Ok((clinic, school))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_TOML;

    #[test]
    fn pins_recovered_from_offsets_are_the_province_pins() {
        let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let demo = crate::demo::write_province(&config, dir.path(), 5, 7).unwrap();
        let set = from_csv(&config, &dir.path().join("beneficiaries.csv")).unwrap();
        let province = from_province(&config, 5, 7).unwrap();
        assert_eq!(set.cards.len(), demo.len());
        for ((from_csv, regenerated), card) in set.cards.iter().zip(&province.cards).zip(&demo) {
            assert_eq!(from_csv.pan, card.pan);
            assert_eq!(from_csv.pin_blocks, regenerated.pin_blocks);
        }
        assert_eq!(set.providers.0.as_deref(), Some("KLINIK-SERANG-01"));
        assert_eq!(set.providers.1.as_deref(), Some("SDN-SERANG-01"));
    }
}

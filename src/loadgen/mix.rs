//! The channel mix: what the load is made of, and how each kind of request looks.
//!
//! Amounts are small on purpose: every 00 debits the ledger, and the province's purses
//! (demo disbursement: cash 750,000, food 300,000, health 500,000, education 400,000,
//! transport 100,000) must last a whole benchmark, so most answers stay 00 rather than
//! turning into cheap 51 declines.

use anyhow::{anyhow, bail, Context};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::Rng;

use super::cards::{Card, PIN_ACQUIRERS};
use crate::client::TxnSpec;
use crate::config::Config;

/// The channel mix `multiguna loadgen` uses unless `--mix` says otherwise.
pub const DEFAULT_MIX: &str = "atm=2,minimarket=3,clinic=1,school=1,damri=2,inquiry=1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Atm,
    Minimarket,
    Clinic,
    School,
    Damri,
    Inquiry,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Atm,
        Kind::Minimarket,
        Kind::Clinic,
        Kind::School,
        Kind::Damri,
        Kind::Inquiry,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Atm => "atm",
            Kind::Minimarket => "minimarket",
            Kind::Clinic => "clinic",
            Kind::School => "school",
            Kind::Damri => "damri",
            Kind::Inquiry => "inquiry",
        }
    }

    /// Acquirer (F32), MCC (F18) and processing code (F3) of the default config's
    /// channels; a balance inquiry goes through an ATM.
    fn route(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Atm => ("360001", "6011", "010000"),
            Kind::Minimarket => ("360002", "5411", "000000"),
            Kind::Clinic => ("360003", "8011", "000000"),
            Kind::School => ("360003", "8211", "000000"),
            Kind::Damri => ("360004", "4111", "000000"),
            Kind::Inquiry => ("360001", "6011", "310000"),
        }
    }

    /// The acquirer (F32) this kind of request is sent for.
    pub fn acquirer(self) -> &'static str {
        self.route().0
    }

    /// Rupiah: ATM 50,000 (the channel's multiple), everything else a few thousand.
    fn amount_rupiah(self, rng: &mut StdRng) -> u64 {
        match self {
            Kind::Atm => 50_000,
            Kind::Minimarket => rng.gen_range(10..=50u64) * 100,
            Kind::Clinic => rng.gen_range(10..=25u64) * 1_000,
            Kind::School => rng.gen_range(5..=20u64) * 1_000,
            Kind::Damri => 3_500,
            Kind::Inquiry => 0,
        }
    }

    /// Damri validators work offline and send no PIN; every other channel needs one.
    fn pin_slot(self) -> Option<usize> {
        let acquirer = self.route().0;
        match self {
            Kind::Damri => None,
            _ => PIN_ACQUIRERS.iter().position(|a| *a == acquirer),
        }
    }
}

/// Weighted choice of `Kind`s, parsed from `atm=2,minimarket=3,...`.
pub struct Mix {
    kinds: Vec<Kind>,
    index: WeightedIndex<u32>,
}

impl Mix {
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut kinds = Vec::new();
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("--mix: {part} is not NAME=WEIGHT"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| anyhow!("--mix: unknown channel {name} (atm, minimarket, clinic, school, damri, inquiry)"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("--mix: weight of {name}"))?;
            if weight > 0 {
                kinds.push(kind);
                weights.push(weight);
            }
        }
        if kinds.is_empty() {
            bail!("--mix: no channel has a weight above 0");
        }
        let index = WeightedIndex::new(&weights).map_err(|e| anyhow!("--mix: {e}"))?;
        Ok(Mix { kinds, index })
    }

    pub fn pick(&self, rng: &mut StdRng) -> Kind {
        self.kinds[self.index.sample(rng)]
    }

    pub fn contains(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// A request on its way out, with what its answer must echo.
pub struct Built {
    pub bytes: Vec<u8>,
    pub kind: Kind,
    pub processing: &'static str,
    pub amount: u64,
}

/// What one request needs besides the card: the connection's terminal and counters.
pub struct Slot<'a> {
    pub stan: u32,
    pub terminal: &'a str,
    pub transmitted: &'a str,
    pub rrn: String,
}

/// Builds requests of the mix over a set of cards.
pub struct Factory {
    cards: Vec<Card>,
    mix: Mix,
    /// Wire units per rupiah of each kind's acquirer (the link's amount exponent).
    scale: Vec<(Kind, u64)>,
    clinic: String,
    school: String,
}

impl Factory {
    pub fn new(
        config: &Config,
        cards: Vec<Card>,
        mix: Mix,
        providers: (Option<String>, Option<String>),
    ) -> anyhow::Result<Factory> {
        if cards.is_empty() {
            bail!("no cards to send requests for");
        }
        let mut scale = Vec::new();
        for kind in Kind::ALL {
            let acquirer = kind.route().0;
            let link = config
                .acquirers
                .iter()
                .find(|a| a.id == acquirer)
                .ok_or_else(|| anyhow!("config has no acquirer {acquirer} ({})", kind.name()))?;
            scale.push((kind, 10u64.pow(link.amount_exponent)));
        }
        let provider = |id: Option<String>, kind: Kind| -> anyhow::Result<String> {
            match id {
                Some(id) => Ok(id),
                None if mix.contains(kind) => {
                    bail!(
                        "--mix has {} but no provider of that channel is known (providers.csv)",
                        kind.name()
                    )
                }
                None => Ok(String::new()),
            }
        };
        let clinic = provider(providers.0, Kind::Clinic)?;
        let school = provider(providers.1, Kind::School)?;
        Ok(Factory {
            cards,
            mix,
            scale,
            clinic,
            school,
        })
    }

    pub fn build(&self, rng: &mut StdRng, slot: Slot<'_>) -> Built {
        let kind = self.mix.pick(rng);
        let card = &self.cards[rng.gen_range(0..self.cards.len())];
        let (acquirer, mcc, processing) = kind.route();
        let scale = self
            .scale
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(1, |s| s.1);
        let amount = kind.amount_rupiah(rng) * scale;
        let (acceptor, private) = match kind {
            // F42 is 15 characters; longer provider ids are matched by their first 15.
            Kind::Clinic => (Some(first_15(&self.clinic)), Some("SVC=CONSULT")),
            Kind::School => (Some(first_15(&self.school)), Some("SVC=UNIFORM")),
            Kind::Damri => (None, Some("ROUTE=SRG-BTN;BUS=B1234")),
            _ => (None, None),
        };
        let spec = TxnSpec {
            mti: "0200".into(),
            pan: Some(card.pan.clone()),
            processing: processing.into(),
            amount: Some(amount),
            stan: slot.stan,
            transmitted: slot.transmitted.to_string(),
            mcc: Some(mcc.into()),
            acquirer: acquirer.into(),
            rrn: Some(slot.rrn),
            terminal: slot.terminal.to_string(),
            acceptor,
            private: private.map(str::to_string),
            pin_block: kind.pin_slot().map(|i| card.pin_blocks[i].clone()),
            ..TxnSpec::default()
        };
        Built {
            bytes: spec.build().to_bytes(),
            kind,
            processing,
            amount,
        }
    }
}

fn first_15(id: &str) -> String {
    id.chars().take(15).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_names_and_weights() {
        let mix = Mix::parse("atm=0, damri=3,inquiry=1").unwrap();
        assert!(!mix.contains(Kind::Atm));
        assert!(mix.contains(Kind::Damri) && mix.contains(Kind::Inquiry));
        assert!(Mix::parse(DEFAULT_MIX).is_ok());
    }

    #[test]
    fn mix_refuses_unknown_names_bad_weights_and_all_zero() {
        assert!(Mix::parse("bakery=1").is_err());
        assert!(Mix::parse("atm=x").is_err());
        assert!(Mix::parse("atm").is_err());
        assert!(Mix::parse("atm=0,damri=0").is_err());
    }

    #[test]
    fn amounts_fit_the_channel_rules() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1_000 {
            assert_eq!(Kind::Atm.amount_rupiah(&mut rng) % 50_000, 0);
            assert!((1_000..=5_000).contains(&Kind::Minimarket.amount_rupiah(&mut rng)));
        }
    }
}

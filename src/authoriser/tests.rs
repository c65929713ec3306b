//! The authoriser against a small, obviously-correct reference model: random sequences
//! of debits, withdrawals, rides, holds, completions, expiries, reversals, refunds,
//! advices and retries must give the same response codes and balances in both.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::state::{Card, PinOffset, State, Wallet};
use super::Core;
use crate::client::TxnSpec;
use crate::config::{Config, DEFAULT_TOML};
use crate::domain::money::Purse;
use crate::domain::pan::{luhn_check_digit, Pan};
use crate::domain::request::Request;
use crate::domain::time::TimestampMs;
use crate::edge::{translate, Inbound};
use crate::ledger::Batch;
use crate::policy::{CardStatus, Policy};
use crate::security::keys::TdesKey;
use crate::security::pin::{encrypt_pin_block, ibm3624_offset, Pin};

const FAMILIES: usize = 2;
const PIN: &str = "123456";
const START_MS: i64 = 1_795_400_000_000; // 2026-11-22, a Sunday in Jakarta
const DAY_MS: i64 = 86_400_000;
const RP: i64 = 100;
/// Disbursed to every purse at the start, rupiah.
const START_RP: [i64; 5] = [750_000, 300_000, 500_000, 400_000, 100_000];
const ACQ_ATM: &str = "360001";
const ACQ_SHOP: &str = "360002";
const ACQ_BUS: &str = "360004";

#[derive(Debug, Clone)]
enum Op {
    Purchase { family: usize, rupiah: u64 },
    Withdrawal { family: usize, fifty_thousands: u64 },
    Ride { family: usize, rupiah: u64 },
    Hold { family: usize, rupiah: u64 },
    Complete { of: usize, rupiah: u64 },
    Refund { family: usize, rupiah: u64 },
    Advice { family: usize, rupiah: u64 },
    Reverse { of: usize },
    Retry { of: usize },
    Conflict { of: usize },
    NextWeek,
}

fn op() -> impl Strategy<Value = Op> {
    let family = 0..FAMILIES;
    prop_oneof![
        (family.clone(), 1..400_000u64)
            .prop_map(|(family, rupiah)| Op::Purchase { family, rupiah }),
        (family.clone(), 0..30u64).prop_map(|(family, fifty_thousands)| Op::Withdrawal {
            family,
            fifty_thousands
        }),
        (family.clone(), 0..40_000u64).prop_map(|(family, rupiah)| Op::Ride { family, rupiah }),
        (family.clone(), 1..200_000u64).prop_map(|(family, rupiah)| Op::Hold { family, rupiah }),
        (0..64usize, 1..250_000u64).prop_map(|(of, rupiah)| Op::Complete { of, rupiah }),
        (family.clone(), 1..100_000u64).prop_map(|(family, rupiah)| Op::Refund { family, rupiah }),
        (family, 1..80_000u64).prop_map(|(family, rupiah)| Op::Advice { family, rupiah }),
        (0..64usize).prop_map(|of| Op::Reverse { of }),
        (0..64usize).prop_map(|of| Op::Retry { of }),
        (0..64usize).prop_map(|of| Op::Conflict { of }),
        Just(Op::NextWeek),
    ]
}

/// The reference: plain arrays and the rules of programme.md written out once more.
#[derive(Default)]
struct Model {
    balance: [[i64; 5]; FAMILIES],
    held: [[i64; 5]; FAMILIES],
    /// Net paid by each purse to the minimarket acquirer.
    refundable: [[i64; 5]; FAMILIES],
    /// (family, channel, day) -> (count, amount).
    daily: HashMap<(usize, &'static str, i64), (u32, i64)>,
    /// Sent op index -> what it did, for reversals and completions.
    done: HashMap<usize, Done>,
}

#[derive(Clone, Debug)]
struct Done {
    rc: &'static str,
    family: usize,
    purse: usize,
    amount: i64,
    channel: &'static str,
    day: i64,
    hold_open: bool,
    reversed: bool,
    debit: bool,
}

impl Model {
    fn new() -> Model {
        let mut m = Model::default();
        for balance in m.balance.iter_mut() {
            *balance = START_RP.map(|rp| rp * RP);
        }
        m
    }

    fn available(&self, f: usize, p: usize) -> i64 {
        self.balance[f][p] - self.held[f][p]
    }

    /// A debit through a channel: limits, then the first purse that covers the amount.
    fn debit(
        &mut self,
        f: usize,
        channel: &'static str,
        amount: i64,
        day: i64,
        hold: bool,
    ) -> (&'static str, Option<usize>) {
        let (purses, max, multiple, count_max, day_max): (&[usize], i64, i64, u32, i64) =
            match channel {
                "atm" => (&[0], 1_250_000 * RP, 50_000 * RP, 5, 2_500_000 * RP),
                "minimarket" => (&[1, 0], 1_000_000 * RP, 1, u32::MAX, i64::MAX),
                _ => (&[4], i64::MAX, 1, 6, i64::MAX),
            };
        if amount <= 0 || amount % multiple != 0 {
            return ("13", None);
        }
        if amount > max {
            return ("61", None);
        }
        let used = self
            .daily
            .get(&(f, channel, day))
            .copied()
            .unwrap_or((0, 0));
        if used.0 >= count_max {
            return ("65", None);
        }
        if used.1 + amount > day_max {
            return ("61", None);
        }
        let Some(&p) = purses.iter().find(|p| self.available(f, **p) >= amount) else {
            return ("51", None);
        };
        if hold {
            self.held[f][p] += amount;
        } else {
            self.post(f, p, channel, -amount);
        }
        let slot = self.daily.entry((f, channel, day)).or_insert((0, 0));
        slot.0 += 1;
        slot.1 += amount;
        ("00", Some(p))
    }

    fn post(&mut self, f: usize, p: usize, channel: &str, delta: i64) {
        self.balance[f][p] += delta;
        if channel == "minimarket" {
            self.refundable[f][p] -= delta;
        }
    }
}

/// The system under test, with a terminal that writes real ISO 8583.
struct Sut {
    core: Core,
    cards: Vec<Pan>,
    zpk: HashMap<&'static str, TdesKey>,
    sent: Vec<TxnSpec>,
}

fn sut() -> Sut {
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
    let policy = Arc::new(Policy::from_config(&config).unwrap());
    let mut state = State {
        funding_accounts: vec![999],
        ..State::default()
    };
    let mut cards = Vec::new();
    for (i, acq) in [ACQ_ATM, ACQ_SHOP, "360003", ACQ_BUS].iter().enumerate() {
        state
            .acquirer_accounts
            .insert((0, acq.to_string()), 900 + i as i64);
    }
    for f in 0..FAMILIES {
        let family_id: Arc<str> = Arc::from(format!("36010000000000{f:02}").as_str());
        let accounts = std::array::from_fn(|p| (f * 5 + p + 1) as i64);
        let balance_minor = std::array::from_fn(|p| START_RP[p] * RP);
        for (p, purse) in Purse::ALL.iter().enumerate() {
            state.purse_accounts.insert(accounts[p], (f as u32, *purse));
        }
        state.push_wallet(Wallet {
            family_id,
            programme: 0,
            accounts,
            balance_minor,
            held_minor: [0; 5],
            cards: vec![f as u32],
        });
        let body = format!("60345600000{f:04}");
        let pan = Pan::parse(&format!("{body}{}", luhn_check_digit(&body))).unwrap();
        let pin_offset = ibm3624_offset(
            pan.digits(),
            &Pin::new(PIN).unwrap(),
            &policy.pin_verification_key,
            &policy.decimalisation,
        )
        .unwrap();
        let pin_offset = PinOffset::parse(&pin_offset).unwrap();
        let card_sha = pan.hash().0;
        state.push_card(Card {
            wallet: f as u32,
            card_sha,
            expiry: 2912,
            status: CardStatus::Active,
            pin_offset,
            pin_fails: 0,
            pin_locked: false,
            pin_unlocked_at_ms: 0,
            daily: Vec::new(),
        });
        cards.push(pan);
    }
    let zpk = config
        .acquirers
        .iter()
        .map(|a| {
            (
                Box::leak(a.id.clone().into_boxed_str()) as &'static str,
                TdesKey::from_hex(&a.zone_pin_key).unwrap(),
            )
        })
        .collect();
    Sut {
        core: Core::new(policy, state),
        cards,
        zpk,
        sent: Vec::new(),
    }
}

impl Sut {
    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        f: usize,
        mti: &str,
        acq: &'static str,
        mcc: &str,
        processing: &str,
        rupiah: u64,
        pin: bool,
    ) -> TxnSpec {
        let stan = self.sent.len() as u32 + 1;
        let pan = &self.cards[f];
        let pin_block = pin.then(|| {
            let block =
                encrypt_pin_block(pan.digits(), &Pin::new(PIN).unwrap(), &self.zpk[acq]).unwrap();
            hex::encode_upper(block)
        });
        TxnSpec {
            mti: mti.into(),
            pan: Some(pan.digits().into()),
            processing: processing.into(),
            amount: Some(rupiah),
            stan,
            transmitted: "1122093000".into(),
            mcc: Some(mcc.into()),
            acquirer: acq.into(),
            rrn: Some(format!("{stan:012}")),
            terminal: "PROPTEST".into(),
            pin_block,
            ..TxnSpec::default()
        }
    }

    fn send(&mut self, spec: TxnSpec, now: TimestampMs) -> String {
        self.sent.push(spec.clone());
        let bytes = spec.build().to_bytes();
        let Inbound::Request(request, _) = translate(&bytes) else {
            panic!("the edge refused a valid request");
        };
        let request: Request = *request;
        let mut batch = Batch::default();
        self.core.expire_holds(now, &mut batch);
        let response = self.core.handle(&request, now, &mut batch);
        batch.check_invariants().expect("every batch balances");
        response.code.as_str().to_string()
    }
}

fn f90(spec: &TxnSpec) -> String {
    format!(
        "{}{:06}{}{:0>11}{}",
        spec.mti,
        spec.stan,
        spec.transmitted,
        spec.acquirer,
        "0".repeat(11)
    )
}

proptest! {
    // PROPTEST_CASES raises the budget for long runs (benches/fuzz.sh).
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    #[test]
    fn authoriser_agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut sut = sut();
        let mut model = Model::new();
        let mut now = TimestampMs(START_MS);
        for op in ops {
            now = TimestampMs(now.0 + 1_000);
            let day = (now.0 + 7 * 3_600_000) / DAY_MS;
            let index = sut.sent.len();
            let (got, want) = step(&mut sut, &mut model, &op, index, day, &mut now);
            prop_assert_eq!(got, want, "op {:?}", op);
        }
        for f in 0..FAMILIES {
            let wallet = &sut.core.state.wallets[f];
            for p in 0..5 {
                prop_assert_eq!(wallet.balance_minor[p], model.balance[f][p], "ledger balance f{} p{}", f, p);
                prop_assert_eq!(wallet.held_minor[p], model.held[f][p], "held f{} p{}", f, p);
            }
        }
    }
}

/// Applies one op to both; returns (switch's code, model's code). Ops that name an
/// earlier op that does not exist are skipped as ("--", "--").
fn step(
    sut: &mut Sut,
    m: &mut Model,
    op: &Op,
    index: usize,
    day: i64,
    now: &mut TimestampMs,
) -> (String, String) {
    let skip = ("--".to_string(), "--".to_string());
    match *op {
        Op::Purchase { family, rupiah } => debit_op(
            sut,
            m,
            index,
            day,
            *now,
            family,
            "minimarket",
            rupiah,
            "0200",
        ),
        Op::Withdrawal {
            family,
            fifty_thousands,
        } => debit_op(
            sut,
            m,
            index,
            day,
            *now,
            family,
            "atm",
            fifty_thousands * 50_000,
            "0200",
        ),
        Op::Ride { family, rupiah } => {
            debit_op(sut, m, index, day, *now, family, "damri", rupiah, "0200")
        }
        Op::Hold { family, rupiah } => debit_op(
            sut,
            m,
            index,
            day,
            *now,
            family,
            "minimarket",
            rupiah,
            "0100",
        ),
        Op::Complete { of, rupiah } => {
            let Some(original) = sut.sent.get(of).cloned() else {
                return skip;
            };
            // Retries and conflicts share the key of the op they repeat: name the first.
            if original.mti != "0100" || m.done.get(&of).is_none_or(|d| d.rc == "--") {
                return skip;
            }
            let mut spec = sut.spec(0, "0220", ACQ_SHOP, "5411", "000000", rupiah, false);
            spec.pan = original.pan.clone();
            spec.original = Some(f90(&original));
            let got = sut.send(spec, *now);
            let want = match m.done.get_mut(&of) {
                Some(d) if d.hold_open => {
                    d.hold_open = false;
                    let posted = (rupiah as i64 * RP).min(d.amount);
                    let (f, p) = (d.family, d.purse);
                    m.held[f][p] -= d.amount;
                    m.post(f, p, "minimarket", -posted);
                    "00"
                }
                _ => "25",
            };
            (got, want.into())
        }
        Op::Refund { family, rupiah } => {
            let spec = sut.spec(family, "0200", ACQ_SHOP, "5411", "200092", rupiah, true);
            let got = sut.send(spec, *now);
            let amount = rupiah as i64 * RP;
            let want = if m.refundable[family][1] >= amount {
                m.post(family, 1, "minimarket", amount);
                "00"
            } else {
                "13"
            };
            (got, want.into())
        }
        Op::Advice { family, rupiah } => {
            let spec = sut.spec(family, "0220", ACQ_BUS, "4111", "000000", rupiah, false);
            let got = sut.send(spec, *now);
            m.post(family, 4, "damri", -(rupiah as i64 * RP));
            let slot = m.daily.entry((family, "damri", day)).or_insert((0, 0));
            slot.0 += 1;
            slot.1 += rupiah as i64 * RP;
            (got, "00".into())
        }
        Op::Reverse { of } => reverse_op(sut, m, of, day, *now),
        Op::Retry { of } => {
            let Some(original) = sut.sent.get(of).cloned() else {
                return skip;
            };
            let want = m.done.get(&of).map_or("--", |d| d.rc);
            if want == "--" {
                return skip;
            }
            sut.sent.push(original.clone());
            let got = resend(sut, original, *now);
            m.done.insert(
                index,
                Done {
                    rc: "--",
                    hold_open: false,
                    debit: false,
                    ..m.done[&of].clone()
                },
            );
            (got, want.into())
        }
        Op::Conflict { of } => {
            let Some(mut original) = sut.sent.get(of).cloned() else {
                return skip;
            };
            if !m.done.contains_key(&of) {
                return skip;
            }
            original.amount = original.amount.map(|a| a + 1);
            sut.sent.push(original.clone());
            (resend(sut, original, *now), "94".into())
        }
        Op::NextWeek => {
            *now = TimestampMs(now.0 + 8 * DAY_MS);
            sut.core.expire_holds(*now, &mut Batch::default());
            for d in m.done.values_mut().filter(|d| d.hold_open) {
                d.hold_open = false;
                m.held[d.family][d.purse] -= d.amount;
            }
            skip
        }
    }
}

fn resend(sut: &mut Sut, spec: TxnSpec, now: TimestampMs) -> String {
    let bytes = spec.build().to_bytes();
    let Inbound::Request(request, _) = translate(&bytes) else {
        panic!("edge")
    };
    let mut batch = Batch::default();
    sut.core.expire_holds(now, &mut batch);
    sut.core
        .handle(&request, now, &mut batch)
        .code
        .as_str()
        .to_string()
}

#[allow(clippy::too_many_arguments)]
fn debit_op(
    sut: &mut Sut,
    m: &mut Model,
    index: usize,
    day: i64,
    now: TimestampMs,
    family: usize,
    channel: &'static str,
    rupiah: u64,
    mti: &str,
) -> (String, String) {
    let (acq, mcc, processing, pin) = match channel {
        "atm" => (ACQ_ATM, "6011", "010000", true),
        "minimarket" => (ACQ_SHOP, "5411", "000000", true),
        _ => (ACQ_BUS, "4111", "000000", false),
    };
    let spec = sut.spec(family, mti, acq, mcc, processing, rupiah, pin);
    let got = sut.send(spec, now);
    let hold = mti == "0100";
    let (rc, purse) = m.debit(family, channel, rupiah as i64 * RP, day, hold);
    let done = Done {
        rc,
        family,
        purse: purse.unwrap_or(0),
        amount: rupiah as i64 * RP,
        channel,
        day,
        hold_open: hold && rc == "00",
        reversed: false,
        debit: !hold,
    };
    m.done.insert(index, done);
    (got, rc.into())
}

fn reverse_op(
    sut: &mut Sut,
    m: &mut Model,
    of: usize,
    day: i64,
    now: TimestampMs,
) -> (String, String) {
    let Some(original) = sut.sent.get(of).cloned() else {
        return ("--".into(), "--".into());
    };
    let Some(done) = m.done.get(&of).cloned() else {
        return ("--".into(), "--".into());
    };
    if done.rc == "--"
        || !matches!(original.mti.as_str(), "0100" | "0200")
        || original.processing.starts_with("20")
    {
        return ("--".into(), "--".into());
    }
    let mut spec = original.clone();
    spec.mti = "0400".into();
    spec.stan = sut.sent.len() as u32 + 1;
    spec.original = Some(f90(&original));
    spec.pin_block = None;
    let got = sut.send(spec, now);
    if done.rc == "00" && !done.reversed && (done.debit || done.hold_open) {
        if done.debit {
            m.post(done.family, done.purse, done.channel, done.amount);
        } else {
            m.held[done.family][done.purse] -= done.amount;
        }
        if done.day == day {
            if let Some(slot) = m.daily.get_mut(&(done.family, done.channel, day)) {
                slot.0 -= 1;
                slot.1 -= done.amount;
            }
        }
        if let Some(d) = m.done.get_mut(&of) {
            d.reversed = true;
            d.hold_open = false;
        }
    }
    (got, "00".into())
}

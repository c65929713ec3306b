//! What a run measured: counts, latency (hdrhistogram, microseconds) and response codes,
//! per connection while running and merged at the end; printed as text or one JSON
//! object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies above this (microseconds: one minute) are recorded as this.
const LATENCY_MAX_US: u64 = 60_000_000;

/// One connection's counts; merged into the run's.
pub struct Stats {
    pub sent: u64,
    pub answered: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub latency_us: Histogram<u64>,
    pub codes: BTreeMap<String, u64>,
    /// Latency per response code, so fast declines (91 under overload) and approvals
    /// can be told apart.
    pub latency_by_code: BTreeMap<String, Histogram<u64>>,
    pub by_channel: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// `--record`: every approved request's key, for checking against the ledger.
    pub approvals: Vec<Approval>,
    /// Open loop: sends that were due before the end but never made (the switch was
    /// so slow that `depth` requests stayed in flight).
    pub unsent_scheduled: u64,
    /// When the last answer came or the connection gave up waiting.
    pub finished: Option<Instant>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            sent: 0,
            answered: 0,
            errors: BTreeMap::new(),
            latency_us: histogram(),
            codes: BTreeMap::new(),
            latency_by_code: BTreeMap::new(),
            by_channel: BTreeMap::new(),
            approvals: Vec::new(),
            unsent_scheduled: 0,
            finished: None,
        }
    }

    pub fn error(&mut self, kind: &'static str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    pub fn answer(&mut self, channel: &'static str, code: &str, latency: Duration) {
        self.answered += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let us = us.clamp(1, LATENCY_MAX_US);
        self.latency_us.saturating_record(us);
        match self.latency_by_code.get_mut(code) {
            Some(h) => h.saturating_record(us),
            None => {
                let mut h = histogram();
                h.saturating_record(us);
                self.latency_by_code.insert(code.to_string(), h);
            }
        }
        bump(&mut self.codes, code);
        bump(self.by_channel.entry(channel).or_default(), code);
    }

    pub fn merge(&mut self, other: Stats) {
        self.sent += other.sent;
        self.answered += other.answered;
        for (kind, n) in other.errors {
            self.error(kind, n);
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        for (code, h) in other.latency_by_code {
            match self.latency_by_code.get_mut(&code) {
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    self.latency_by_code.insert(code, h);
                }
            }
        }
        self.approvals.extend(other.approvals);
        for (channel, codes) in other.by_channel {
            let mine = self.by_channel.entry(channel).or_default();
            for (code, n) in codes {
                *mine.entry(code).or_default() += n;
            }
        }
        self.unsent_scheduled += other.unsent_scheduled;
        self.finished = self.finished.max(other.finished);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
}

/// An approved request's idempotency key as sent: F32, the connection (F41 is
/// `LG` and its index), F11 and F7.
pub struct Approval {
    pub acquirer: &'static str,
    pub connection: u32,
    pub stan: u32,
    pub transmitted: [u8; 10],
}

impl Approval {
    /// One CSV line: `acquirer,terminal,stan,transmitted`, as the ledger stores them.
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{:06},{}\n",
            self.acquirer,
            super::conn::terminal_id(self.connection),
            self.stan,
            String::from_utf8_lossy(&self.transmitted)
        )
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Counts without allocating a key for codes already seen (the common case).
fn bump(map: &mut BTreeMap<String, u64>, code: &str) {
    match map.get_mut(code) {
        Some(n) => *n += 1,
        None => {
            map.insert(code.to_string(), 1);
        }
    }
}

/// The settings a report names, so two reports can be compared.
#[derive(Serialize, Clone)]
pub struct Settings {
    pub target: String,
    pub mode: &'static str,
    pub connections: u32,
    pub depth: usize,
    pub rate: Option<f64>,
    pub mix: String,
    pub cards: usize,
}

#[derive(Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Latency of the answers with one response code. Its own key names, so a report's
/// top-level `p50`, `p99` ... stay unique (benches/run.sh reads them with sed).
#[derive(Serialize)]
pub struct CodeLatency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub settings: Settings,
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub unsent_scheduled: u64,
    pub duration_s: f64,
    pub throughput_per_s: f64,
    pub latency_ms: LatencyMs,
    pub response_codes: BTreeMap<String, u64>,
    pub latency_by_code: BTreeMap<String, CodeLatency>,
    pub by_channel: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Report {
    pub fn new(settings: Settings, stats: Stats, start: Instant) -> Report {
        let duration = stats
            .finished
            .map_or(Duration::ZERO, |end| end.saturating_duration_since(start));
        let seconds = duration.as_secs_f64();
        let h = &stats.latency_us;
        let ms = |us: u64| us as f64 / 1_000.0;
        let q = |quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(quantile))
            }
        };
        Report {
            settings,
            sent: stats.sent,
            answered: stats.answered,
            errors: stats.errors.values().sum(),
            error_kinds: stats
                .errors
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            unsent_scheduled: stats.unsent_scheduled,
            duration_s: seconds,
            throughput_per_s: if seconds > 0.0 {
                stats.answered as f64 / seconds
            } else {
                0.0
            },
            latency_ms: LatencyMs {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p999: q(0.999),
                max: if h.is_empty() { 0.0 } else { ms(h.max()) },
                mean: h.mean() / 1_000.0,
            },
            response_codes: stats.codes,
            latency_by_code: stats
                .latency_by_code
                .iter()
                .map(|(code, h)| {
                    let latency = CodeLatency {
                        count: h.len(),
                        p50_ms: ms(h.value_at_quantile(0.50)),
                        p99_ms: ms(h.value_at_quantile(0.99)),
                        max_ms: ms(h.max()),
                    };
                    (code.clone(), latency)
                })
                .collect(),
            by_channel: stats
                .by_channel
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    pub fn text(&self) -> String {
        let s = &self.settings;
        let l = &self.latency_ms;
        let mut out = String::new();
        let rate = s.rate.map_or(String::new(), |r| format!(" at {r}/s"));
        let _ = writeln!(
            out,
            "multiguna loadgen: {} loop{rate}, {} connections x depth {}, {} cards, {}",
            s.mode, s.connections, s.depth, s.cards, s.target
        );
        let _ = writeln!(
            out,
            "sent {}  answered {}  errors {}{}",
            self.sent,
            self.answered,
            self.errors,
            kinds(&self.error_kinds)
        );
        if self.unsent_scheduled > 0 {
            let _ = writeln!(
                out,
                "behind schedule: {} sends never made",
                self.unsent_scheduled
            );
        }
        let _ = writeln!(
            out,
            "duration {:.2} s  throughput {:.1}/s",
            self.duration_s, self.throughput_per_s
        );
        let _ = writeln!(
            out,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let _ = writeln!(out, "response codes {}", codes(&self.response_codes));
        for (code, l) in &self.latency_by_code {
            let _ = writeln!(
                out,
                "  rc {code} latency ms  p50 {:.3}  p99 {:.3}  max {:.3}",
                l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        for (channel, by_code) in &self.by_channel {
            let _ = writeln!(out, "  {channel:<10} {}", codes(by_code));
        }
        out
    }
}

fn codes(map: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map.iter().map(|(c, n)| format!("{c}={n}")).collect();
    parts.join(" ")
}

fn kinds(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        String::new()
    } else {
        format!(" ({})", codes(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up_and_report_percentiles() {
        let start = Instant::now();
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.sent = 2;
        b.sent = 1;
        a.answer("atm", "00", Duration::from_millis(1));
        a.answer("damri", "51", Duration::from_millis(3));
        b.answer("atm", "00", Duration::from_millis(2));
        b.error("timeout", 1);
        b.finished = Some(start + Duration::from_secs(2));
        a.merge(b);
        let settings = Settings {
            target: "127.0.0.1:1".into(),
            mode: "closed",
            connections: 2,
            depth: 1,
            rate: None,
            mix: "atm=1".into(),
            cards: 1,
        };
        let report = Report::new(settings, a, start);
        assert_eq!((report.sent, report.answered, report.errors), (3, 3, 1));
        assert_eq!(report.response_codes["00"], 2);
        assert_eq!(report.by_channel["atm"]["00"], 2);
        assert!((report.throughput_per_s - 1.5).abs() < 1e-9);
        assert!((report.latency_ms.p50 - 2.0).abs() < 0.01);
        assert!((report.latency_ms.max - 3.0).abs() < 0.01);
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mode"], "closed");
        assert_eq!(json["error_kinds"]["timeout"], 1);
        assert_eq!(report.latency_by_code["00"].count, 2);
        assert!((report.latency_by_code["51"].max_ms - 3.0).abs() < 0.01);
    }
}

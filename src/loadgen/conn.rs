//! One connection of the load: a terminal id of its own (F41), a writer side that keeps
//! up to `depth` requests in flight (closed loop) or sends at scheduled times (open
//! loop), and a reader side that matches each answer to its request by MTI+F11+F41 and
//! checks it.
//!
//! Both sides run in one task, so the in-flight table needs no lock. A write cannot
//! wait forever on answers nobody reads: `depth` (at most 1,024 requests of a few
//! hundred bytes) keeps the bytes in flight far below the loopback socket buffers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::SplitSink;
use futures::{FutureExt, SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::mix::{Factory, Kind, Slot};
use super::report::{Approval, Stats};
use crate::client::transmission_time_now;
use crate::config::Framing;
use crate::iso8583::{Message, Mti};
use crate::net::framing::{FrameCodec, FrameError};

/// Every request is a 0200, so every answer must be its MTI + 10.
const RESPONSE_MTI: Mti = Mti::FINANCIAL_RESPONSE;
const STAN_MAX: u32 = 999_999;
/// How late after the end an open loop may still send a slot scheduled before it.
const TIMER_GRACE: Duration = Duration::from_millis(100);

type Sink = SplitSink<Framed<TcpStream, FrameCodec>, Bytes>;

/// When a connection stops sending.
pub enum Stop {
    /// `--duration-s`: nothing is sent from this instant on.
    At(Instant),
    /// `--requests`: a count shared by all connections.
    After(Arc<Budget>),
}

/// `--requests N` shared by the connections: whichever is free sends the next one.
pub struct Budget {
    limit: u64,
    taken: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            taken: AtomicU64::new(0),
        })
    }

    fn take(&self) -> bool {
        self.taken.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

/// Open loop: this connection's interval between sends and its first send time.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub interval: Duration,
    pub first: Instant,
}

pub struct Plan {
    pub index: u32,
    pub depth: usize,
    pub stop: Stop,
    pub schedule: Option<Schedule>,
    pub timeout: Duration,
    pub seed: u64,
    /// Keep every approved request's key (`--record`).
    pub record: bool,
}

/// F41 of connection `index`: each connection is a terminal of its own.
pub fn terminal_id(index: u32) -> String {
    format!("LG{index:06}")
}

struct Pending {
    /// Latency counts from here: the send time, or in open loop the scheduled time,
    /// so a slow switch that delays our sends cannot hide its delay (no coordinated
    /// omission).
    intended: Instant,
    sent_at: Instant,
    kind: Kind,
    processing: &'static str,
    amount: u64,
    /// F7 as sent: with F32, F41 and F11 the key the ledger stores the answer under.
    transmitted: [u8; 10],
}

enum Due {
    Now(Instant),
    Later,
    Done,
}

/// `MMDDhhmmss` (F7), formatted once a second rather than once a request.
struct F7Clock {
    second: u64,
    text: String,
}

impl F7Clock {
    fn now(&mut self) -> &str {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = transmission_time_now();
        }
        &self.text
    }
}

struct Conn {
    plan: Plan,
    factory: Arc<Factory>,
    terminal: String,
    rng: StdRng,
    pending: HashMap<u32, Pending>,
    next_stan: u32,
    next_at: Instant,
    done_sending: bool,
    clock: F7Clock,
    stats: Stats,
}

/// Runs one connection until it has sent its share and heard every answer (or given
/// up on them after the timeout); returns what it counted.
pub async fn run(stream: TcpStream, framing: Framing, plan: Plan, factory: Arc<Factory>) -> Stats {
    let framed = Framed::new(stream, FrameCodec::new(framing, 64 * 1024));
    let (mut sink, mut frames) = framed.split();
    let mut conn = Conn::new(plan, factory);
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    let mut drain_until = None;
    let unanswered = 'connection: loop {
        let now = Instant::now();
        if conn.fill(&mut sink).await.is_err() {
            break "connection_lost";
        }
        if conn.done_sending {
            let until = *drain_until.get_or_insert(now + conn.plan.timeout);
            if conn.pending.is_empty() || now >= until {
                break "timeout";
            }
        }
        let wake = conn.wake_at(drain_until, now);
        tokio::select! {
            first = frames.next() => {
                // The answers that came in the same read are taken before the refill,
                // so their replacements go out in one write, not one write (and one
                // segment for the switch to read) each.
                let mut frame = first;
                let mut taken = 0;
                loop {
                    match frame {
                        Some(Ok(bytes)) => conn.on_answer(&bytes, Instant::now()),
                        Some(Err(_)) | None => break 'connection "connection_lost",
                    }
                    taken += 1;
                    if taken >= conn.plan.depth {
                        break;
                    }
                    match frames.next().now_or_never() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
            }
            _ = sweep.tick() => conn.expire(Instant::now()),
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    };
    conn.finish(unanswered)
}

impl Conn {
    fn new(plan: Plan, factory: Arc<Factory>) -> Conn {
        let first = plan.schedule.map_or_else(Instant::now, |s| s.first);
        Conn {
            // One terminal per connection, so F41 tells the connections' answers apart.
            terminal: terminal_id(plan.index),
            rng: StdRng::seed_from_u64(plan.seed ^ u64::from(plan.index).wrapping_mul(0x9E37)),
            pending: HashMap::with_capacity(plan.depth * 2),
            // A random start: two runs against one switch in the same second would
            // otherwise repeat (F32, F41, F11, F7) and get the first run's answers.
            next_stan: rand::thread_rng().gen_range(1..=STAN_MAX),
            next_at: first,
            done_sending: false,
            clock: F7Clock {
                second: 0,
                text: String::new(),
            },
            stats: Stats::new(),
            plan,
            factory,
        }
    }

    /// Sends what is due, up to `depth` in flight, then flushes once.
    async fn fill(&mut self, sink: &mut Sink) -> Result<(), FrameError> {
        let mut fed = false;
        while !self.done_sending && self.pending.len() < self.plan.depth {
            match self.due(Instant::now()) {
                Due::Now(intended) => {
                    let bytes = self.request(intended);
                    sink.feed(Bytes::from(bytes)).await?;
                    fed = true;
                }
                Due::Later => break,
                Due::Done => self.done_sending = true,
            }
        }
        if fed {
            sink.flush().await?;
        }
        Ok(())
    }

    fn due(&mut self, now: Instant) -> Due {
        if let Stop::At(deadline) = self.plan.stop {
            // Open loop sends every slot scheduled before the end, even when the timer
            // wakes a little after it; a switch that leaves us further behind than the
            // grace has its remaining slots counted as unsent.
            let ended = match self.plan.schedule {
                Some(_) => self.next_at >= deadline || now >= deadline + TIMER_GRACE,
                None => now >= deadline,
            };
            if ended {
                self.count_unsent(deadline);
                return Due::Done;
            }
        }
        let intended = match self.plan.schedule {
            Some(_) if self.next_at > now => return Due::Later,
            Some(_) => self.next_at,
            None => now,
        };
        if let Stop::After(budget) = &self.plan.stop {
            if !budget.take() {
                return Due::Done;
            }
        }
        if let Some(schedule) = self.plan.schedule {
            self.next_at += schedule.interval;
        }
        Due::Now(intended)
    }

    /// Open loop: the slots between the last send and the end that were never sent.
    fn count_unsent(&mut self, deadline: Instant) {
        if let Some(schedule) = self.plan.schedule {
            let behind = deadline.saturating_duration_since(self.next_at).as_nanos();
            let interval = schedule.interval.as_nanos().max(1);
            self.stats.unsent_scheduled += behind.div_ceil(interval) as u64;
        }
    }

    fn wake_at(&self, drain_until: Option<Instant>, now: Instant) -> Instant {
        if let Some(until) = drain_until {
            return until;
        }
        let mut wake = now + Duration::from_secs(3_600);
        // A deadline already past wakes no one: sending ends with the next answer,
        // instead of a busy loop while `depth` requests are in flight.
        if let Stop::At(deadline) = self.plan.stop {
            if deadline > now {
                wake = wake.min(deadline);
            }
        }
        if self.plan.schedule.is_some() && self.pending.len() < self.plan.depth {
            wake = wake.min(self.next_at);
        }
        wake
    }

    fn request(&mut self, intended: Instant) -> Vec<u8> {
        let stan = self.allocate_stan();
        let f7 = self.clock.now();
        let mut transmitted = [b'0'; 10];
        let n = f7.len().min(transmitted.len());
        transmitted[..n].copy_from_slice(&f7.as_bytes()[..n]);
        let slot = Slot {
            stan,
            terminal: &self.terminal,
            transmitted: f7,
            rrn: format!(
                "{:04}{:08}",
                self.plan.index % 10_000,
                self.stats.sent % 100_000_000
            ),
        };
        let built = self.factory.build(&mut self.rng, slot);
        self.pending.insert(
            stan,
            Pending {
                intended,
                sent_at: Instant::now(),
                kind: built.kind,
                processing: built.processing,
                amount: built.amount,
                transmitted,
            },
        );
        self.stats.sent += 1;
        built.bytes
    }

    /// STANs wrap at 999,999 and skip the ones still in flight.
    fn allocate_stan(&mut self) -> u32 {
        loop {
            let stan = self.next_stan;
            self.next_stan = if stan >= STAN_MAX { 1 } else { stan + 1 };
            if !self.pending.contains_key(&stan) {
                return stan;
            }
        }
    }

    fn on_answer(&mut self, frame: &[u8], now: Instant) {
        let Ok(message) = Message::parse(frame) else {
            self.stats.error("unparseable", 1);
            return;
        };
        let stan = message.field_str(11).and_then(|s| s.parse::<u32>().ok());
        let ours = message.field_str(41) == Some(self.terminal.as_str());
        let Some(pending) = stan.filter(|_| ours).and_then(|s| self.pending.remove(&s)) else {
            self.stats.error("unmatched", 1);
            return;
        };
        match check(&message, &pending) {
            Ok(code) => {
                if self.plan.record && code == "00" {
                    self.stats.approvals.push(Approval {
                        acquirer: pending.kind.acquirer(),
                        connection: self.plan.index,
                        stan: stan.unwrap_or_default(),
                        transmitted: pending.transmitted,
                    });
                }
                self.stats.answer(
                    pending.kind.name(),
                    code,
                    now.saturating_duration_since(pending.intended),
                )
            }
            Err(kind) => self.stats.error(kind, 1),
        }
    }

    /// Requests unanswered for `timeout` are errors, and free their place in flight.
    fn expire(&mut self, now: Instant) {
        let timeout = self.plan.timeout;
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.sent_at) < timeout);
        self.stats
            .error("timeout", (before - self.pending.len()) as u64);
    }

    fn finish(mut self, unanswered: &'static str) -> Stats {
        let left = self.pending.len() as u64;
        self.stats.error(unanswered, left);
        self.stats.finished = Some(Instant::now());
        self.stats
    }
}

/// The answer to a 0200 is a 0210 echoing F3 and F4 (F11 and F41 matched it) with F39.
fn check<'a>(message: &Message<'a>, pending: &Pending) -> Result<&'a str, &'static str> {
    if message.mti() != RESPONSE_MTI {
        return Err("bad_mti");
    }
    if message.field_str(3) != Some(pending.processing) {
        return Err("bad_echo_f3");
    }
    if message.field_str(4).and_then(|a| a.parse::<u64>().ok()) != Some(pending.amount) {
        return Err("bad_echo_f4");
    }
    match message.field_str(39) {
        Some(code) if code.len() == 2 => Ok(code),
        _ => Err("no_f39"),
    }
}

//! One connection: a reader that decodes frames and hands requests to the authoriser,
//! and a writer that sends each response as soon as it is ready, in whatever order
//! (pipelining: a slow request never blocks the next one; peers match by MTI+F11+F41).
//! Plain TCP and TLS share this code: it takes the two halves of any byte stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use metrics::SharedString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::framing::FrameCodec;
use super::listener::NetContext;
use crate::admin::metrics::{
    mti_label, FRAMES_REJECTED_TOTAL, MESSAGES_DROPPED_TOTAL, REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
};
use crate::config::ListenerConfig;
use crate::domain::request::Request;
use crate::domain::response::{Response, ResponseCode};
use crate::edge::{self, Inbound};
use crate::iso8583::MessageBuilder;

/// How long a finished connection waits to deliver its closing bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a draining connection waits for more of what its peer already sent.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// The longest a connection keeps reading after shutdown began.
const DRAIN_MAX: Duration = Duration::from_secs(5);

type PendingReply = Pin<Box<dyn Future<Output = Outgoing> + Send>>;

/// A response on its way out, and what its metrics need once it is written.
struct Outgoing {
    bytes: Bytes,
    timing: RequestTiming,
}

/// When a request's frame was read, and its labels: bounded sets only, never card data.
struct RequestTiming {
    started: Instant,
    channel: SharedString,
    mti: &'static str,
    rc: &'static str,
}

/// The request metrics' handles this connection has used, by label set: building a
/// metric key and looking it up in the registry for every answer was ~2% of the switch's
/// CPU. A connection sees a handful of (channel, MTI, rc) sets; past the bound, answers
/// are recorded through the registry as before.
#[derive(Default)]
struct RequestMetrics {
    seen: Vec<RequestHandles>,
}

struct RequestHandles {
    channel: SharedString,
    mti: &'static str,
    rc: &'static str,
    duration: metrics::Histogram,
    requests: metrics::Counter,
}

/// Label sets a connection keeps handles for (6 channels x 3 MTIs x a few codes).
const REQUEST_HANDLES_MAX: usize = 64;

impl RequestMetrics {
    /// Called once the response is written: that is when the peer can have it.
    fn record(&mut self, timing: RequestTiming) {
        let elapsed_s = timing.started.elapsed().as_secs_f64();
        let known = self
            .seen
            .iter()
            .find(|h| h.mti == timing.mti && h.rc == timing.rc && h.channel == timing.channel);
        if let Some(handles) = known {
            handles.duration.record(elapsed_s);
            handles.requests.increment(1);
            return;
        }
        let handles = RequestHandles {
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, "channel" => timing.channel.clone()),
            requests: metrics::counter!(REQUESTS_TOTAL, "channel" => timing.channel.clone(), "mti" => timing.mti, "rc" => timing.rc),
            channel: timing.channel,
            mti: timing.mti,
            rc: timing.rc,
        };
        handles.duration.record(elapsed_s);
        handles.requests.increment(1);
        if self.seen.len() < REQUEST_HANDLES_MAX {
            self.seen.push(handles);
        }
    }
}

/// Serves one connection until the peer leaves, it idles out, a frame is invalid, or
/// shutdown. `acquirer` is the one acquirer id a mutual-TLS link may send in F32.
pub async fn run<R, W>(
    (read_half, write_half): (R, W),
    config: &ListenerConfig,
    ctx: Arc<NetContext>,
    shutdown: CancellationToken,
    acquirer: Option<Arc<str>>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let codec = FrameCodec::new(config.framing, config.max_frame);
    let mut frames = FramedRead::new(read_half, codec);
    let sink = FramedWrite::new(write_half, codec);
    let inflight = Arc::new(Semaphore::new(config.inflight_per_connection_max.max(1)));
    let (tx, rx) = mpsc::channel::<PendingReply>(config.inflight_per_connection_max.max(1));
    let writer = tokio::spawn(write_loop(sink, rx));
    let idle = Duration::from_secs(config.idle_timeout_s.max(1));
    let mut draining: Option<Instant> = None;
    loop {
        // On shutdown, requests already sent (buffered or on the wire) are still read
        // and answered; the connection closes once the peer pauses for DRAIN_QUIET, or
        // after DRAIN_MAX whatever it sends.
        if draining.is_some_and(|since| since.elapsed() > DRAIN_MAX) {
            break;
        }
        let wait = if draining.is_some() {
            DRAIN_QUIET
        } else {
            idle
        };
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if draining.is_none() => {
                draining = Some(Instant::now());
                continue;
            }
            next = tokio::time::timeout(wait, frames.next()) => next,
        };
        let frame = match next {
            Err(_) if draining.is_some() => break,
            Err(_) => {
                tracing::info!(listener = %config.name, "idle timeout: connection closed");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(err))) if err.is_peer_gone() => {
                tracing::debug!(listener = %config.name, "peer left without TLS close_notify");
                break;
            }
            Ok(Some(Err(err))) => {
                // An invalid frame ends this connection, not any other.
                metrics::counter!(FRAMES_REJECTED_TOTAL, "reason" => err.reason()).increment(1);
                tracing::warn!(listener = %config.name, reason = err.reason(), error = %err, "frame rejected: connection closed");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let started = Instant::now();
        // Bounded in-flight requests per connection: past the bound, stop reading.
        let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
            break;
        };
        if let Some(pending) = handle_frame(&frame, &ctx, acquirer.as_deref(), permit, started) {
            if tx.send(pending).await.is_err() {
                break;
            }
        }
    }
    drop(tx);
    // The writer finishes the requests already in flight, then closes.
    let _ = writer.await;
}

fn handle_frame(
    frame: &[u8],
    ctx: &NetContext,
    bound_acquirer: Option<&str>,
    permit: OwnedSemaphorePermit,
    started: Instant,
) -> Option<PendingReply> {
    let mti = mti_label(frame);
    match edge::translate(frame) {
        Inbound::Request(request, skeleton) => {
            let channel = ctx.channel_label(request.mcc);
            let timing = move |rc| RequestTiming {
                started,
                channel,
                mti,
                rc,
            };
            if let Some(bound) = sent_for_another_acquirer(bound_acquirer, &request) {
                return Some(refuse_foreign_acquirer(
                    bound, &request, skeleton, permit, timing,
                ));
            }
            Some(decide(request, skeleton, ctx, permit, timing))
        }
        Inbound::Reply(bytes, code) => {
            // Answered at the edge before any channel is known.
            let timing = RequestTiming {
                started,
                channel: SharedString::const_str("none"),
                mti,
                rc: code.as_str(),
            };
            Some(ready(permit, Bytes::from(bytes), timing))
        }
        Inbound::Drop(reason) => {
            metrics::counter!(MESSAGES_DROPPED_TOTAL, "reason" => reason).increment(1);
            tracing::debug!(reason, "message dropped");
            None
        }
    }
}

/// A mutual-TLS link speaks for one acquirer: a request naming another in F32 comes from
/// a rogue or misconfigured link, whatever its certificate says. Returns the link's own.
fn sent_for_another_acquirer<'a>(
    bound_acquirer: Option<&'a str>,
    request: &Request,
) -> Option<&'a str> {
    bound_acquirer.filter(|bound| *bound != request.key.acquirer)
}

/// `03` at the edge: the request never reaches the authoriser, so it moves no money and
/// writes no ledger row (a retry is refused the same way).
fn refuse_foreign_acquirer(
    bound: &str,
    request: &Request,
    mut skeleton: Box<MessageBuilder>,
    permit: OwnedSemaphorePermit,
    timing: impl FnOnce(&'static str) -> RequestTiming,
) -> PendingReply {
    tracing::warn!(link = %bound, f32 = %request.key.acquirer, "F32 is not the acquirer of this TLS link: 03");
    let refused = Response::declined(ResponseCode::AcquirerNotAllowed);
    // A decline carries no balances, so the link's amount exponent plays no part.
    let bytes = Bytes::from(edge::encode_response(&mut skeleton, &refused, 0));
    ready(permit, bytes, timing(refused.code.as_str()))
}

/// The authoriser's answer, or the echo baseline's 00, encoded for the link.
fn decide(
    request: Box<Request>,
    mut skeleton: Box<MessageBuilder>,
    ctx: &NetContext,
    permit: OwnedSemaphorePermit,
    timing: impl FnOnce(&'static str) -> RequestTiming + Send + 'static,
) -> PendingReply {
    let exponent = ctx.exponent(&request.key.acquirer);
    let Some(authoriser) = ctx.authoriser.as_ref() else {
        let echo = Response::declined(ResponseCode::Approved);
        let bytes = Bytes::from(edge::encode_response(&mut skeleton, &echo, exponent));
        return ready(permit, bytes, timing(echo.code.as_str()));
    };
    // One span per request, with the masked PAN only; at debug level it costs a level
    // check when off. The logger masks nothing itself because nothing whole reaches it.
    let span = tracing::debug_span!(
        "request",
        mti = %request.mti,
        stan = %request.key.stan,
        rrn = request.rrn.as_deref().unwrap_or(""),
        terminal = %request.key.terminal,
        acquirer = %request.key.acquirer,
        channel = %ctx.channel_label(request.mcc),
        pan = %request.pan.as_ref().map(|p| p.masked()).unwrap_or_default(),
    );
    let answer = authoriser.submit(*request);
    Box::pin(tracing::Instrument::instrument(
        async move {
            let response = answer
                .await
                .unwrap_or_else(|_| Response::declined(ResponseCode::SystemMalfunction));
            tracing::debug!(rc = response.code.as_str(), "answered");
            drop(permit);
            let bytes = Bytes::from(edge::encode_response(&mut skeleton, &response, exponent));
            Outgoing {
                bytes,
                timing: timing(response.code.as_str()),
            }
        },
        span,
    ))
}

/// A response that needs nothing more before it is written.
fn ready(permit: OwnedSemaphorePermit, bytes: Bytes, timing: RequestTiming) -> PendingReply {
    Box::pin(async move {
        drop(permit);
        Outgoing { bytes, timing }
    })
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<PendingReply>,
) {
    let mut pending = FuturesUnordered::new();
    // The answers of one write, recorded once it is flushed.
    let mut written: Vec<RequestTiming> = Vec::new();
    let mut request_metrics = RequestMetrics::default();
    let mut open = true;
    loop {
        tokio::select! {
            item = rx.recv(), if open => match item {
                Some(reply) => pending.push(reply),
                None => open = false,
            },
            Some(reply) = pending.next(), if !pending.is_empty() => {
                // Answers are released a ledger batch at a time: every one already
                // decided goes out in the same write (one syscall, fewer segments),
                // not one write each. The codec flushes by itself past its buffer
                // bound, and `pending` holds at most the connection's in-flight limit.
                written.push(reply.timing);
                let mut sent = sink.feed(reply.bytes).await;
                while sent.is_ok() {
                    let Some(Some(more)) = pending.next().now_or_never() else {
                        break;
                    };
                    written.push(more.timing);
                    sent = sink.feed(more.bytes).await;
                }
                if sent.is_ok() {
                    sent = sink.flush().await;
                }
                if let Err(err) = sent {
                    // These responses and the ones still being decided have no one to go to.
                    let lost = (written.len() + pending.len()) as u64;
                    metrics::counter!(MESSAGES_DROPPED_TOTAL, "reason" => "peer_gone").increment(lost);
                    tracing::debug!(error = %err, "peer gone: responses dropped");
                    break;
                }
                for timing in written.drain(..) {
                    request_metrics.record(timing);
                }
            }
            else => {
                // Everything is answered: a TLS peer gets its close_notify, a TCP peer
                // its FIN. Bounded, as a peer that stopped reading may never take it.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                break;
            }
        }
    }
}

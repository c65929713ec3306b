//! One connection: a reader that decodes frames and hands requests to the authoriser,
//! and a writer that sends each response as soon as it is ready, in whatever order
//! (pipelining: a slow request never blocks the next one; peers match by MTI+F11+F41).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::framing::FrameCodec;
use super::listener::NetContext;
use crate::config::ListenerConfig;
use crate::domain::response::{Response, ResponseCode};
use crate::edge::{self, Inbound};

type PendingReply = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

pub async fn run(
    stream: TcpStream,
    config: &ListenerConfig,
    ctx: Arc<NetContext>,
    shutdown: CancellationToken,
) {
    let codec = FrameCodec::new(config.framing, config.max_frame);
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, codec);
    let sink = FramedWrite::new(write_half, codec);
    let inflight = Arc::new(Semaphore::new(config.inflight_per_connection_max.max(1)));
    let (tx, rx) = mpsc::channel::<PendingReply>(config.inflight_per_connection_max.max(1));
    let writer = tokio::spawn(write_loop(sink, rx));
    let idle = Duration::from_secs(config.idle_timeout_s.max(1));
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = tokio::time::timeout(idle, frames.next()) => next,
        };
        let frame = match next {
            Err(_) => {
                tracing::info!(listener = %config.name, "idle timeout: connection closed");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                // An invalid frame ends this connection, not any other.
                tracing::warn!(listener = %config.name, reason = err.reason(), error = %err, "frame rejected: connection closed");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        // Bounded in-flight requests per connection: past the bound, stop reading.
        let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
            break;
        };
        if let Some(pending) = handle_frame(&frame, &ctx, permit) {
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
    permit: OwnedSemaphorePermit,
) -> Option<PendingReply> {
    match edge::translate(frame) {
        Inbound::Request(request, skeleton) => {
            let exponent = ctx.exponent(&request.key.acquirer);
            let Some(authoriser) = ctx.authoriser.as_ref() else {
                let echo = Response::declined(ResponseCode::Approved);
                let bytes = Bytes::from(edge::encode_response(*skeleton, &echo, exponent));
                return Some(Box::pin(async move {
                    drop(permit);
                    Some(bytes)
                }));
            };
            let answer = authoriser.submit(*request);
            Some(Box::pin(async move {
                let response = answer
                    .await
                    .unwrap_or_else(|_| Response::declined(ResponseCode::SystemMalfunction));
                drop(permit);
                Some(Bytes::from(edge::encode_response(
                    *skeleton, &response, exponent,
                )))
            }))
        }
        Inbound::Reply(bytes) => Some(Box::pin(async move {
            drop(permit);
            Some(Bytes::from(bytes))
        })),
        Inbound::Drop(reason) => {
            tracing::debug!(reason, "message dropped");
            None
        }
    }
}

async fn write_loop(
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
    mut rx: mpsc::Receiver<PendingReply>,
) {
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            item = rx.recv(), if open => match item {
                Some(reply) => pending.push(reply),
                None => open = false,
            },
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if let Some(bytes) = reply {
                    if let Err(err) = sink.send(bytes).await {
                        tracing::debug!(error = %err, "peer gone: responses dropped");
                        break;
                    }
                }
            }
            else => break,
        }
    }
}

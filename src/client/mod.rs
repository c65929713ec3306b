//! A terminal's side of the wire: connect, send ISO 8583 requests, read answers.
//! Used by `multiguna send`, the demo's traffic and the tests.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::config::Framing;
use crate::iso8583::{Message, MessageBuilder, Mti};
use crate::net::framing::{FrameCodec, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("connection closed by the switch")]
    Closed,
    #[error("bad response: {0}")]
    BadResponse(String),
}

pub struct IsoClient {
    framed: Framed<TcpStream, FrameCodec>,
}

/// An answer, owned.
#[derive(Clone)]
pub struct Answer {
    pub bytes: Bytes,
}

impl Answer {
    pub fn message(&self) -> Result<Message<'_>, ClientError> {
        Message::parse(&self.bytes).map_err(|e| ClientError::BadResponse(e.error.to_string()))
    }

    pub fn field(&self, n: u8) -> Option<String> {
        self.message().ok()?.field_str(n).map(str::to_string)
    }

    pub fn response_code(&self) -> Option<String> {
        self.field(39)
    }
}

impl IsoClient {
    pub async fn connect(addr: SocketAddr, framing: Framing) -> Result<IsoClient, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        Ok(IsoClient {
            framed: Framed::new(stream, FrameCodec::new(framing, 64 * 1024)),
        })
    }

    pub async fn send(&mut self, message: &MessageBuilder) -> Result<(), ClientError> {
        self.framed.send(Bytes::from(message.to_bytes())).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.framed.send(Bytes::from(bytes)).await?;
        Ok(())
    }

    pub async fn receive(&mut self) -> Result<Answer, ClientError> {
        match self.framed.next().await {
            Some(Ok(bytes)) => Ok(Answer { bytes }),
            Some(Err(e)) => Err(e.into()),
            None => Err(ClientError::Closed),
        }
    }

    /// Sends one request and waits for its answer (no pipelining).
    pub async fn request(&mut self, message: &MessageBuilder) -> Result<Answer, ClientError> {
        self.send(message).await?;
        self.receive().await
    }
}

/// The fields of a typical request; `build` makes the ISO 8583 message.
#[derive(Clone, Default)]
pub struct TxnSpec {
    pub mti: String,
    pub pan: Option<String>,
    pub processing: String,
    pub amount: Option<u64>,
    pub stan: u32,
    pub transmitted: String,
    pub expiry: Option<String>,
    pub mcc: Option<String>,
    pub acquirer: String,
    pub rrn: Option<String>,
    pub terminal: String,
    pub acceptor: Option<String>,
    pub private: Option<String>,
    pub pin_block: Option<String>,
    pub original: Option<String>,
    pub replacement: Option<String>,
}

impl TxnSpec {
    pub fn build(&self) -> MessageBuilder {
        let mti = self.mti.parse::<Mti>().unwrap_or(Mti::FINANCIAL_REQUEST);
        let mut b = MessageBuilder::new(mti);
        let mut set = |n: u8, v: Option<&str>| {
            if let Some(v) = v {
                if let Err(e) = b.set_str(n, v) {
                    tracing::warn!(field = n, error = %e, "field left out");
                }
            }
        };
        set(2, self.pan.as_deref());
        set(3, Some(&self.processing));
        set(4, self.amount.map(|a| format!("{a:012}")).as_deref());
        set(7, Some(&self.transmitted));
        set(11, Some(&format!("{:06}", self.stan % 1_000_000)));
        set(14, self.expiry.as_deref());
        set(18, self.mcc.as_deref());
        set(32, Some(&self.acquirer));
        set(37, self.rrn.as_deref());
        set(41, Some(&format!("{:<8}", self.terminal)));
        set(
            42,
            self.acceptor
                .as_ref()
                .map(|a| format!("{a:<15}"))
                .as_deref(),
        );
        set(48, self.private.as_deref());
        set(49, Some("360"));
        set(52, self.pin_block.as_deref());
        set(90, self.original.as_deref());
        set(95, self.replacement.as_deref());
        b
    }
}

/// Masks the PAN and the PIN block, like every other type that carries them.
impl std::fmt::Debug for TxnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnSpec")
            .field("mti", &self.mti)
            .field(
                "pan",
                &self.pan.as_deref().map(crate::domain::pan::mask_pan),
            )
            .field("processing", &self.processing)
            .field("amount", &self.amount)
            .field("stan", &self.stan)
            .field("acquirer", &self.acquirer)
            .field("terminal", &self.terminal)
            .field("pin_block", &self.pin_block.as_ref().map(|_| "****"))
            .finish_non_exhaustive()
    }
}

/// `MMDDhhmmss` of now, UTC (F7).
pub fn transmission_time_now() -> String {
    chrono::Utc::now().format("%m%d%H%M%S").to_string()
}

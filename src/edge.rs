//! The edge: ISO 8583 in, domain `Request` out; domain `Response` in, ISO 8583 out.
//! This is the only module past the codec that knows field numbers (jPOS: the wire is
//! translated once into the internal message).

use sha2::{Digest, Sha256};

use crate::domain::money::minor_to_wire;
use crate::domain::pan::Pan;
use crate::domain::request::{
    AccountChoice, MessageClass, OriginalData, PinBlock, PrivateData, Request, RequestKey, TxnType,
};
use crate::domain::response::{Response, ResponseCode};
use crate::iso8583::{Message, MessageBuilder, Mti};

/// Fields a response echoes as received (wire.md, "Messages").
const ECHOED: [u8; 12] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49];
const ECHOED_NETWORK: [u8; 4] = [7, 11, 32, 70];

/// What to do with one frame.
pub enum Inbound {
    /// A request for the authoriser, and the response skeleton with the echoed fields.
    Request(Box<Request>, Box<MessageBuilder>),
    /// Answered at the edge: network management, format errors, unknown types; the code
    /// is for the metrics.
    Reply(Vec<u8>, ResponseCode),
    /// Nothing to answer (no MTI and F11, or a response sent to us); counted.
    Drop(&'static str),
}

/// Translates one frame. Never panics; every malformed input has an outcome.
pub fn translate(frame: &[u8]) -> Inbound {
    let message = match Message::parse(frame) {
        Ok(message) => message,
        Err(err) => {
            tracing::debug!(error = %err.error, "unparseable message");
            return match err.partial.as_deref() {
                Some(partial) if partial.has(11) => format_error(partial),
                _ => Inbound::Drop("unparseable"),
            };
        }
    };
    let mti = message.mti();
    if mti.is_response() {
        return Inbound::Drop("response_received");
    }
    let Some(class) = class_of(mti) else {
        return match mti.response() {
            Some(_) if message.has(11) => {
                reply_code(&message, &ECHOED, ResponseCode::InvalidTransaction)
            }
            _ => Inbound::Drop("unknown_mti"),
        };
    };
    if class == MessageClass::NetworkManagement {
        return network_management(&message);
    }
    match to_request(&message, class, frame) {
        Some(request) => Inbound::Request(Box::new(request), skeleton(&message, &ECHOED)),
        // Without F11 the peer could not match an answer: dropped, as wire.md says.
        None if !message.has(11) => Inbound::Drop("no_stan"),
        None => format_error(&message),
    }
}

fn class_of(mti: Mti) -> Option<MessageClass> {
    match mti.as_str() {
        "0100" | "0101" => Some(MessageClass::Authorisation),
        "0200" | "0201" => Some(MessageClass::Financial),
        "0220" | "0221" => Some(MessageClass::Advice),
        "0400" | "0401" => Some(MessageClass::ReversalRequest),
        "0420" | "0421" => Some(MessageClass::ReversalAdvice),
        "0800" | "0801" => Some(MessageClass::NetworkManagement),
        _ => None,
    }
}

/// 0800: 001 sign-on, 002 sign-off, 301 echo are answered 00; other codes 12.
fn network_management(message: &Message<'_>) -> Inbound {
    if !message.has(11) {
        return Inbound::Drop("no_stan");
    }
    let code = match message.field_str(70) {
        Some("001" | "002" | "301") => ResponseCode::Approved,
        Some(_) => ResponseCode::InvalidTransaction,
        None => ResponseCode::FormatError,
    };
    reply_code(message, &ECHOED_NETWORK, code)
}

fn format_error(message: &Message<'_>) -> Inbound {
    reply_code(message, &ECHOED, ResponseCode::FormatError)
}

fn reply_code(message: &Message<'_>, echoed: &[u8], code: ResponseCode) -> Inbound {
    let response = Response::declined(code);
    Inbound::Reply(
        encode_response(&mut skeleton(message, echoed), &response, 0),
        code,
    )
}

/// The response MTI and the echoed fields, copied before the frame buffer is reused.
/// Boxed from the start: it goes with the request to the task that answers it.
fn skeleton(message: &Message<'_>, echoed: &[u8]) -> Box<MessageBuilder> {
    let mti = message.mti().response().unwrap_or(message.mti());
    let mut builder = Box::new(MessageBuilder::new(mti));
    for n in echoed {
        if let Some(value) = message.field(*n) {
            // A parsed value always fits its own field spec; nothing to handle.
            let _ = builder.set(*n, value);
        }
    }
    builder
}

/// Adds F38, F39 and F54 to the skeleton and encodes it. `exponent` is the link's. The
/// skeleton is borrowed, not moved: its field table is 1.5 KB, copied at every move.
pub fn encode_response(
    builder: &mut MessageBuilder,
    response: &Response,
    exponent: u32,
) -> Vec<u8> {
    if let Some(code) = response.approval_code.as_deref() {
        let _ = builder.set_str(38, code);
    }
    let _ = builder.set_str(39, response.code.as_str());
    if !response.balances.is_empty() {
        let _ = builder.set_str(54, &f54(response, exponent));
    }
    builder.to_bytes()
}

/// One 20-character entry per balance: purse, amount type, 360, C/D, 12 digits.
fn f54(response: &Response, exponent: u32) -> String {
    let mut out = String::with_capacity(response.balances.len() * 20);
    for b in &response.balances {
        let amount = minor_to_wire(b.amount_minor, exponent);
        let sign = if amount < 0 { 'D' } else { 'C' };
        let magnitude = amount.unsigned_abs().min(999_999_999_999);
        out.push_str(&format!(
            "{}{}360{sign}{magnitude:012}",
            b.purse.code(),
            b.amount_type.code()
        ));
    }
    out
}

/// Format checks only; business rules are the policy's. `None` means `30`.
fn to_request(message: &Message<'_>, class: MessageClass, frame: &[u8]) -> Option<Request> {
    let key = RequestKey {
        acquirer: message.field_str(32)?.to_string(),
        terminal: message.field_str(41)?.to_string(),
        stan: message.field_str(11)?.to_string(),
        transmitted: message.field_str(7)?.to_string(),
    };
    let needs_amount = matches!(
        class,
        MessageClass::Authorisation | MessageClass::Financial | MessageClass::Advice
    );
    let processing = message.field_str(3);
    if needs_amount && processing.is_none() {
        return None;
    }
    let (txn_type, from_account, to_account) = processing_code(processing.unwrap_or("000000"));
    let amount_wire = match message.field_str(4) {
        Some(digits) => digits.parse().ok()?,
        None if needs_amount && txn_type != Some(TxnType::BalanceInquiry) => return None,
        None => 0,
    };
    let (pan, expiry) = card_data(message)?;
    Some(Request {
        class,
        mti: message.mti().as_str().to_string(),
        repeat: message.mti().is_repeat(),
        key,
        content_sha: Sha256::digest(frame.get(4..).unwrap_or_default()).into(),
        txn_type,
        from_account,
        to_account,
        amount_wire,
        currency: message.field_str(49).map(str::to_string),
        card_sha: pan.as_ref().map(Pan::hash),
        pan,
        expiry,
        mcc: message.field_str(18).map(|m| m.parse()).transpose().ok()?,
        rrn: message.field_str(37).map(|r| r.trim().to_string()),
        acceptor_id: message.field_str(42).map(|a| a.trim().to_string()),
        pin_block: pin_block(message)?,
        private: private_data(message.field_str(48))?,
        original: original_data(message.field_str(90))?,
        replacement_amount_wire: message
            .field_str(95)
            .map(|f| f.get(0..12).and_then(|d| d.parse().ok()))
            .map_or(Some(None), |v| v.map(Some))?,
    })
}

fn processing_code(f3: &str) -> (Option<TxnType>, AccountChoice, AccountChoice) {
    let part = |range: std::ops::Range<usize>| f3.get(range).unwrap_or("00");
    (
        TxnType::from_code(part(0..2)),
        AccountChoice::from_code(part(2..4)),
        AccountChoice::from_code(part(4..6)),
    )
}

/// PAN and expiry from F2/F14, or from track 2 (`PAN=YYMM...`) when F2 is absent.
/// `None` when present but malformed; `Some((None, _))` when the message has no card.
fn card_data(message: &Message<'_>) -> Option<(Option<Pan>, Option<u16>)> {
    let expiry = message
        .field_str(14)
        .map(|e| e.parse::<u16>())
        .transpose()
        .ok()?;
    if let Some(digits) = message.field_str(2) {
        return Some((Some(Pan::parse(digits)?), expiry));
    }
    let Some(track) = message.field_str(35) else {
        return Some((None, expiry));
    };
    let (pan, rest) = track.split_once(['=', 'D'])?;
    let track_expiry = rest.get(0..4)?.parse::<u16>().ok()?;
    Some((Some(Pan::parse(pan)?), expiry.or(Some(track_expiry))))
}

fn pin_block(message: &Message<'_>) -> Option<Option<PinBlock>> {
    let Some(text) = message.field_str(52) else {
        return Some(None);
    };
    let mut block = [0u8; 8];
    hex::decode_to_slice(text, &mut block).ok()?;
    Some(Some(PinBlock(block)))
}

/// F48 `KEY=VALUE;KEY=VALUE`; unknown keys are ignored, a pair without `=` is malformed.
fn private_data(f48: Option<&str>) -> Option<PrivateData> {
    let mut data = PrivateData::default();
    for pair in f48.unwrap_or("").split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        if key.is_empty() {
            return None;
        }
        let slot = match key {
            "SVC" => &mut data.service,
            "ROUTE" => &mut data.route,
            "BUS" => &mut data.bus,
            "TAP" => &mut data.tap,
            _ => continue,
        };
        *slot = Some(value.to_string());
    }
    Some(data)
}

/// F90: original MTI(4) STAN(6) F7(10) acquirer(11) forwarding(11).
fn original_data(f90: Option<&str>) -> Option<Option<OriginalData>> {
    let Some(text) = f90 else {
        return Some(None);
    };
    Some(Some(OriginalData {
        mti: text.get(0..4)?.to_string(),
        stan: text.get(4..10)?.to_string(),
        transmitted: text.get(10..20)?.to_string(),
        acquirer: text.get(20..31)?.trim_start_matches('0').to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase() -> MessageBuilder {
        let mut b = MessageBuilder::new(Mti::FINANCIAL_REQUEST);
        for (n, v) in [
            (2, "6034560000000000"),
            (3, "000000"),
            (4, "000000015000"),
            (7, "1123101500"),
            (11, "000001"),
            (18, "5411"),
            (32, "360002"),
            (37, "000000000001"),
            (41, "TERM0001"),
            (48, "SVC=XRAY;FOO=bar"),
            (49, "360"),
        ] {
            b.set_str(n, v).unwrap();
        }
        b
    }

    #[test]
    fn a_purchase_becomes_a_request_with_its_key_and_private_data() {
        let frame = purchase().to_bytes();
        let Inbound::Request(request, skeleton) = translate(&frame) else {
            panic!("not a request");
        };
        assert_eq!(request.key.stan, "000001");
        assert_eq!(request.amount_wire, 15_000);
        assert_eq!(request.private.service.as_deref(), Some("XRAY"));
        assert_eq!(skeleton.mti(), Mti::FINANCIAL_RESPONSE);
        assert_eq!(skeleton.get_str(2), Some("6034560000000000"));
    }

    #[test]
    fn malformed_f48_is_answered_30_with_the_echoed_stan() {
        let mut b = purchase();
        b.set_str(48, "SVC").unwrap();
        let Inbound::Reply(bytes, _) = translate(&b.to_bytes()) else {
            panic!("expected a reply");
        };
        let reply = Message::parse(&bytes).unwrap();
        assert_eq!(reply.field_str(39), Some("30"));
        assert_eq!(reply.field_str(11), Some("000001"));
    }

    #[test]
    fn f54_uses_the_link_exponent_and_a_debit_sign_below_zero() {
        use crate::domain::money::Purse;
        use crate::domain::response::{AmountType, Balance};
        let response = Response {
            code: ResponseCode::Approved,
            approval_code: None,
            balances: vec![
                Balance {
                    purse: Purse::Cash,
                    amount_type: AmountType::Available,
                    amount_minor: 75_000_099,
                },
                Balance {
                    purse: Purse::Transport,
                    amount_type: AmountType::Available,
                    amount_minor: -350_000,
                },
            ],
        };
        assert_eq!(
            f54(&response, 0),
            "9102360C0000007500009502360D000000003500"
        );
        assert_eq!(&f54(&response, 2)[..20], "9102360C000075000099");
    }

    #[test]
    fn garbage_without_stan_is_dropped() {
        assert!(matches!(translate(b"xx"), Inbound::Drop(_)));
        assert!(matches!(translate(b""), Inbound::Drop(_)));
    }
}

//! Parse a typical 0200 purchase and build its 0210 response: the codec alone, and the
//! edge's whole part of a request (the frame into a `Request` and a response skeleton,
//! then the answer encoded), as the connection does it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use multiguna::domain::response::{Response, ResponseCode};
use multiguna::edge::{self, Inbound};
use multiguna::iso8583::{Message, MessageBuilder, Mti};

/// The purchase from tests/vectors (encoded by pyiso8583), 20 fields.
fn purchase_0200() -> Vec<u8> {
    let mut b = MessageBuilder::new(Mti::FINANCIAL_REQUEST);
    let fields: [(u8, &str); 20] = [
        (2, "6034560000000000"),
        (3, "000000"),
        (4, "000000150000"),
        (7, "0315103045"),
        (11, "000123"),
        (12, "173045"),
        (13, "0315"),
        (14, "2912"),
        (18, "6011"),
        (22, "021"),
        (25, "00"),
        (32, "60345600"),
        (37, "407410000123"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (43, "TOKO SEJAHTERA          JAKARTA      IDN"),
        (48, "CH=ATM;PURSE=MAIN;REF=ABC-123"),
        (49, "360"),
        (52, "1A2B3C4D5E6F7081"),
        (35, "6034560000000000=29121010000012345678"),
    ];
    for (n, v) in fields {
        b.set_str(n, v).expect("valid bench field");
    }
    b.to_bytes()
}

/// What the switch does per approval: echo request fields, add 38/39/54, encode.
fn build_0210(req: &Message<'_>, out: &mut Vec<u8>) {
    let mti = req.mti().response().unwrap_or(Mti::FINANCIAL_RESPONSE);
    let mut resp = MessageBuilder::new(mti);
    for n in [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
        if let Some(v) = req.field(n) {
            resp.set(n, v).expect("echoed field is valid");
        }
    }
    resp.set_str(38, "A1B2C3").expect("valid");
    resp.set_str(39, "00").expect("valid");
    resp.set_str(54, "1002360C000000850000").expect("valid");
    resp.encode(out);
}

fn bench(c: &mut Criterion) {
    let bytes = purchase_0200();
    c.bench_function("parse_0200", |b| {
        b.iter(|| Message::parse(black_box(&bytes)).map(|m| m.field(11)).ok())
    });
    let req = Message::parse(&bytes).expect("parses");
    let mut out = Vec::with_capacity(512);
    c.bench_function("build_0210", |b| {
        b.iter(|| {
            out.clear();
            build_0210(black_box(&req), &mut out);
            black_box(out.len())
        })
    });
    let approved = Response {
        code: ResponseCode::Approved,
        approval_code: Some("A1B2C3".into()),
        balances: Vec::new(),
    };
    c.bench_function("edge_0200_to_0210", |b| {
        b.iter(|| match edge::translate(black_box(&bytes)) {
            Inbound::Request(request, mut skeleton) => {
                black_box(&request);
                edge::encode_response(&mut skeleton, black_box(&approved), 2).len()
            }
            _ => 0,
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

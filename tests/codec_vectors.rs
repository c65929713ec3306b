//! Cross-checks against pyiso8583 `default_ascii` (an independent implementation):
//! messages it encoded (tools/make_vectors.py) and its field table.

use multiguna::iso8583::{FieldSpec, Kind, Message, MessageBuilder, Mti};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/pyiso8583_default_ascii.json");
const SPEC: &str = include_str!("vectors/pyiso8583_default_ascii_spec.json");

fn from_hex(hex: &str) -> Vec<u8> {
    assert_eq!(hex.len() % 2, 0, "odd hex length");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn vectors() -> Vec<Value> {
    let parsed: Value = serde_json::from_str(VECTORS).expect("vector json");
    parsed.as_array().expect("array of vectors").clone()
}

#[test]
fn decodes_every_pyiso8583_vector() {
    let vectors = vectors();
    assert!(vectors.len() >= 6);
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let bytes = from_hex(v["hex"].as_str().expect("hex"));
        let msg = Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            msg.mti().as_str(),
            v["mti"].as_str().expect("mti"),
            "{name}"
        );
        let expected = v["fields"].as_object().expect("fields");
        for (key, value) in expected {
            let n: u8 = key.parse().expect("field number");
            assert_eq!(msg.field_str(n), value.as_str(), "{name} field {n}");
        }
        assert_eq!(msg.fields().count(), expected.len(), "{name}: extra fields");
    }
}

#[test]
fn reencodes_every_pyiso8583_vector_byte_for_byte() {
    for v in &vectors() {
        let name = v["name"].as_str().expect("name");
        let bytes = from_hex(v["hex"].as_str().expect("hex"));
        // Once from the parsed message, once built from the JSON values alone.
        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.to_builder().to_bytes(), bytes, "{name} via to_builder");
        let mti: Mti = v["mti"].as_str().expect("mti").parse().expect("mti");
        let mut builder = MessageBuilder::new(mti);
        for (key, value) in v["fields"].as_object().expect("fields") {
            let n: u8 = key.parse().expect("field number");
            builder
                .set_str(n, value.as_str().expect("str"))
                .expect("valid");
        }
        assert_eq!(builder.to_bytes(), bytes, "{name} via builder");
    }
}

#[test]
fn field_table_matches_pyiso8583_default_ascii() {
    let spec: Value = serde_json::from_str(SPEC).expect("spec json");
    let fields = spec["fields"].as_object().expect("fields");
    assert_eq!(fields.len(), 128);
    for (key, theirs) in fields {
        let n: u8 = key.parse().expect("field number");
        let ours = FieldSpec::get(n).expect("in table");
        let kind = match theirs["len_type"].as_u64() {
            Some(0) => Kind::Fixed,
            Some(2) => Kind::LlVar,
            Some(3) => Kind::LllVar,
            other => panic!("field {n}: len_type {other:?}"),
        };
        assert_eq!(ours.kind, kind, "field {n} kind");
        assert_eq!(
            Some(u64::from(ours.max_len)),
            theirs["max_len"].as_u64(),
            "field {n} max_len"
        );
    }
}

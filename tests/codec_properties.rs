//! Property tests: parse never panics, errors point inside the input, and valid
//! messages survive encode -> parse -> encode unchanged.

use std::collections::BTreeMap;

use multiguna::iso8583::{Class, FieldSpec, Kind, Location, Message, MessageBuilder, Mti};
use proptest::prelude::*;

type Fields = BTreeMap<u8, Vec<u8>>;

fn alphabet(class: Class) -> &'static [u8] {
    match class {
        Class::N => b"0123456789",
        Class::An => b"0123456789ABCXYZabcxyz ",
        Class::Ans => b"0123456789ABCxyz !\"#=;~/-_.,'",
        Class::Hex => b"0123456789ABCDEFabcdef",
        Class::Amount => b"0123456789",
        Class::Track => b"0123456789=D?;",
    }
}

/// A value valid for field `n`, its length and bytes drawn from `seed`.
fn value_for(n: u8, seed: &[u8]) -> Vec<u8> {
    let spec = FieldSpec::get(n).expect("field in table");
    let max = usize::from(spec.max_len);
    let len = match spec.kind {
        Kind::Fixed => max,
        Kind::LlVar | Kind::LllVar => seed.len() % (max + 1),
    };
    let chars = alphabet(spec.class);
    (0..len)
        .map(|i| {
            let s = usize::from(seed.get(i % seed.len().max(1)).copied().unwrap_or(0)) + i;
            match (spec.class, i) {
                (Class::Amount, 0) => b"CD"[s % 2],
                _ => chars[s % chars.len()],
            }
        })
        .collect()
}

fn mti() -> impl Strategy<Value = Mti> {
    "[0-9]{4}".prop_map(|s| s.parse().expect("four digits"))
}

fn valid_message() -> impl Strategy<Value = (Mti, Fields)> {
    let field = (2u8..=128).prop_filter("bit 65 is refused", |n| *n != 65);
    let seeds =
        prop::collection::btree_map(field, prop::collection::vec(any::<u8>(), 0..1000), 0..24);
    (mti(), seeds).prop_map(|(mti, seeds)| {
        let fields = seeds
            .into_iter()
            .map(|(n, seed)| (n, value_for(n, &seed)))
            .collect();
        (mti, fields)
    })
}

fn encode(mti: Mti, fields: &Fields) -> Vec<u8> {
    let mut builder = MessageBuilder::new(mti);
    for (&n, value) in fields {
        builder.set(n, value).expect("generated value is valid");
    }
    builder.to_bytes()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    match *m {
        Mutation::Flip(i, x) => bytes[i % len] ^= x,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Delete(i) => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
}

/// Whatever parse returns must be consistent with the input it was given.
fn check_outcome(input: &[u8]) {
    let range = input.as_ptr_range();
    let within = |v: &[u8]| range.start <= v.as_ptr() && v.as_ptr_range().end <= range.end;
    match Message::parse(input) {
        Ok(msg) => assert!(msg.fields().all(|(_, v)| within(v))),
        Err(e) => {
            assert!(
                e.error.offset <= input.len(),
                "{e} beyond {} bytes",
                input.len()
            );
            if let Location::Field(n) = e.error.location {
                assert!((2..=128).contains(&n), "{e}");
            }
            if let Some(partial) = e.partial {
                assert!(partial.fields().all(|(_, v)| within(v)));
            }
        }
    }
}

proptest! {
    // PROPTEST_CASES raises the budget for long runs (benches/fuzz.sh).
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_outcome(&bytes);
    }

    #[test]
    fn random_body_after_valid_header_never_panics(
        mti in mti(),
        bitmap in "[0-9A-Fa-f]{16}",
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = mti.as_bytes().to_vec();
        bytes.extend_from_slice(bitmap.as_bytes());
        bytes.extend_from_slice(&body);
        check_outcome(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        (mti, fields) in valid_message(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(mti, &fields);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_outcome(&bytes);
    }

    #[test]
    fn valid_messages_round_trip((mti, fields) in valid_message()) {
        let bytes = encode(mti, &fields);
        let msg = Message::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(msg.mti(), mti);
        let parsed: Fields = msg.fields().map(|(n, v)| (n, v.to_vec())).collect();
        prop_assert_eq!(&parsed, &fields);
        prop_assert_eq!(msg.to_builder().to_bytes(), bytes);
    }
}

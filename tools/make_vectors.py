#!/usr/bin/env python3
"""Make ISO 8583 test vectors with an independent implementation (pyiso8583).

Writes, under tests/vectors/:
  pyiso8583_default_ascii.json       messages encoded by pyiso8583 `default_ascii`
  pyiso8583_default_ascii_spec.json  that spec's length type and max length per field

The Rust tests decode every vector, compare each field, re-encode byte for byte, and
compare our field table with the spec dump. All values are test data (Luhn-valid test
PANs, made-up terminals); nothing here is real card data.

Usage: pip install pyiso8583==4.0.1 && python3 tools/make_vectors.py
"""

import json
import pathlib

import iso8583
from iso8583.specs import default_ascii

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors"

PAN = "6034560000000000"
PAN_19 = "6034560000000000005"


def luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


PURCHASE = {
    "t": "0200",
    "2": PAN,
    "3": "000000",
    "4": "000000150000",
    "7": "0315103045",
    "11": "000123",
    "12": "173045",
    "13": "0315",
    "14": "2912",
    "18": "6011",
    "22": "021",
    "25": "00",
    "32": "60345600",
    "37": "407410000123",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "43": "TOKO SEJAHTERA          JAKARTA      IDN",
    "48": "CH=ATM;PURSE=MAIN;REF=ABC-123",
    "49": "360",
    "52": "1A2B3C4D5E6F7081",
}

VECTORS = [
    ("purchase_0200", PURCHASE),
    (
        "purchase_response_0210",
        {
            "t": "0210",
            "2": PAN,
            "3": "000000",
            "4": "000000150000",
            "7": "0315103045",
            "11": "000123",
            "37": "407410000123",
            "38": "A1B2C3",
            "39": "00",
            "41": "TERM0001",
            "49": "360",
            "54": "1002360C0000008500001001360C000000850000",
        },
    ),
    (
        "echo_0800",
        {"t": "0800", "7": "0315103045", "11": "000124", "70": "301"},
    ),
    (
        "reversal_advice_0420",
        {
            "t": "0420",
            "2": PAN,
            "3": "011000",
            "4": "000000500000",
            "7": "0315104500",
            "11": "000125",
            "32": "60345600",
            "37": "407410000124",
            "39": "00",
            "41": "TERM0002",
            "49": "360",
            "90": "0200" + "000124" + "0315104000" + "00060345600" + "00000000000",
            "95": "000000300000000000000000C00000000C00000000",
        },
    ),
    (
        "authorization_0100",
        {
            "t": "0100",
            "2": PAN_19,
            "3": "300000",
            "4": "000000000000",
            "7": "0315110000",
            "11": "000126",
            "14": "3001",
            "22": "012",
            "32": "60345600",
            "37": "407411000126",
            "41": "TERM0003",
            "42": "MERCHANT0000002",
            "49": "360",
            "53": "2600000000000000",
        },
    ),
    (
        "purchase_track2_0200",
        {
            "t": "0200",
            "3": "000000",
            "4": "000000075000",
            "7": "0315120000",
            "11": "000127",
            "18": "6011",
            "22": "021",
            "25": "00",
            "32": "60345600",
            "35": PAN + "=29121010000012345678",
            "37": "407412000127",
            "41": "TERM0001",
            "42": "MERCHANT0000001",
            "49": "360",
            "52": "0F1E2D3C4B5A6978",
        },
    ),
    (
        "reversal_with_mac_0400",
        {
            "t": "0400",
            "2": PAN,
            "3": "000000",
            "4": "000000150000",
            "11": "000128",
            "90": "0200" + "000123" + "0315103045" + "00060345600" + "00000000000",
            "128": "89ABCDEF01234567",
        },
    ),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    vectors = []
    for name, doc in VECTORS:
        for key in ("2", "35"):
            if key in doc:
                assert luhn_ok(doc[key].split("=")[0]), (name, key)
        raw, _ = iso8583.encode(dict(doc), default_ascii)
        decoded, _ = iso8583.decode(bytes(raw), default_ascii)
        fields = {k: v for k, v in doc.items() if k != "t"}
        # pyiso8583 must read back what it wrote, bitmaps aside.
        assert {k: decoded[k] for k in fields} == fields, name
        vectors.append(
            {"name": name, "mti": doc["t"], "hex": bytes(raw).hex(), "fields": fields}
        )
    (OUT / "pyiso8583_default_ascii.json").write_text(json.dumps(vectors, indent=2) + "\n")

    spec = {
        key: {"len_type": f["len_type"], "max_len": f["max_len"], "desc": f["desc"]}
        for key, f in default_ascii.items()
        if key.isdigit()
    }
    meta = {"pyiso8583": iso8583.__version__, "fields": spec}
    (OUT / "pyiso8583_default_ascii_spec.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(vectors)} vectors and {len(spec)} field specs to {OUT}")


if __name__ == "__main__":
    main()

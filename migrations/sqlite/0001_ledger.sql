-- multiguna schema, SQLite. Ledger tables are append-only: triggers refuse UPDATE and
-- DELETE, so a correction is always a new row.

CREATE TABLE IF NOT EXISTS programmes (
    programme_id TEXT PRIMARY KEY,
    name         TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS accounts (
    account_id   INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,      -- funding | purse | acquirer | provider
    programme_id TEXT NOT NULL,
    owner        TEXT NOT NULL,      -- programme id, family id, acquirer id or provider id
    purse        TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, programme_id, owner, purse)
);

CREATE TABLE IF NOT EXISTS families (
    seq          INTEGER PRIMARY KEY,
    family_id    TEXT NOT NULL UNIQUE,
    programme_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS members (
    member_id    TEXT PRIMARY KEY,
    family_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL
);

-- A card is known by the SHA-256 of its PAN: the database never holds a whole PAN.
CREATE TABLE IF NOT EXISTS cards (
    seq          INTEGER PRIMARY KEY,
    card_sha     TEXT NOT NULL UNIQUE,
    pan_masked   TEXT NOT NULL,
    member_id    TEXT NOT NULL,
    family_id    TEXT NOT NULL,
    expiry       TEXT NOT NULL,
    pin_offset   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS providers (
    seq          INTEGER PRIMARY KEY,
    provider_id  TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    channel      TEXT NOT NULL
);

-- Status changes and PIN unlocks, in order; a card's status is its last event.
CREATE TABLE IF NOT EXISTS card_events (
    seq          INTEGER PRIMARY KEY,
    card_sha     TEXT NOT NULL,
    event        TEXT NOT NULL,
    at_ms        BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS ledger_batches (
    batch_seq    BIGINT PRIMARY KEY,
    source       TEXT NOT NULL,      -- switch | cli | api
    committed_ms BIGINT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);

-- One row per decided message or money movement, approved or not.
CREATE TABLE IF NOT EXISTS transfers (
    batch_seq     BIGINT NOT NULL,
    idx           INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    mti           TEXT NOT NULL,
    rc            TEXT NOT NULL,
    approval      TEXT NOT NULL,
    acquirer      TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    stan          TEXT NOT NULL,
    transmitted   TEXT NOT NULL,
    rrn           TEXT NOT NULL,
    content_sha   TEXT NOT NULL,
    card_sha      TEXT NOT NULL,
    family_id     TEXT NOT NULL,
    programme_id  TEXT NOT NULL,
    channel       TEXT NOT NULL,
    purse         TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    acceptor      TEXT NOT NULL,
    reference     TEXT NOT NULL,     -- reversals: the original's key; disbursements: batch ref
    business_day  INTEGER NOT NULL,
    at_ms         BIGINT NOT NULL,
    balances      TEXT NOT NULL,
    PRIMARY KEY (batch_seq, idx)
);
CREATE INDEX IF NOT EXISTS transfers_key ON transfers (acquirer, terminal, stan, transmitted);
CREATE INDEX IF NOT EXISTS transfers_at ON transfers (at_ms);
CREATE INDEX IF NOT EXISTS transfers_card ON transfers (card_sha, at_ms);
CREATE INDEX IF NOT EXISTS transfers_reference ON transfers (kind, reference);

-- Double entry: the entries of a transfer sum to zero. Signed minor units: a credit to
-- an account is positive, a debit negative.
CREATE TABLE IF NOT EXISTS entries (
    batch_seq     BIGINT NOT NULL,
    transfer_idx  INTEGER NOT NULL,
    entry_idx     INTEGER NOT NULL,
    account_id    BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    PRIMARY KEY (batch_seq, transfer_idx, entry_idx)
);
CREATE INDEX IF NOT EXISTS entries_account ON entries (account_id);

CREATE TRIGGER IF NOT EXISTS ledger_batches_no_update BEFORE UPDATE ON ledger_batches
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_batches_no_delete BEFORE DELETE ON ledger_batches
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS transfers_no_update BEFORE UPDATE ON transfers
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS transfers_no_delete BEFORE DELETE ON transfers
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS card_events_no_update BEFORE UPDATE ON card_events
BEGIN SELECT RAISE(ABORT, 'card events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS card_events_no_delete BEFORE DELETE ON card_events
BEGIN SELECT RAISE(ABORT, 'card events are append-only'); END;

-- A disbursement line posts once, however often its file is loaded.
CREATE UNIQUE INDEX IF NOT EXISTS transfers_disbursement_once
    ON transfers (reference, family_id, purse) WHERE kind = 'disbursement';

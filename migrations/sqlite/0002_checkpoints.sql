-- Balance checkpoints: start-up reads the latest balance of each account plus the
-- entries after the last checkpoint, not all history. Each checkpoint holds the
-- balances of the accounts touched since the one before. Append-only.

CREATE TABLE IF NOT EXISTS checkpoints (
    batch_seq    BIGINT PRIMARY KEY,
    at_ms        BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS balance_checkpoints (
    batch_seq     BIGINT NOT NULL,
    account_id    BIGINT NOT NULL,
    balance_minor BIGINT NOT NULL,
    PRIMARY KEY (account_id, batch_seq)
);

CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS balance_checkpoints_no_update BEFORE UPDATE ON balance_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS balance_checkpoints_no_delete BEFORE DELETE ON balance_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;

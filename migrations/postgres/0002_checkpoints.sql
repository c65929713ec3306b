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

DROP TRIGGER IF EXISTS checkpoints_append_only ON checkpoints;
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION multiguna_append_only();
DROP TRIGGER IF EXISTS balance_checkpoints_append_only ON balance_checkpoints;
CREATE TRIGGER balance_checkpoints_append_only BEFORE UPDATE OR DELETE ON balance_checkpoints
    FOR EACH ROW EXECUTE FUNCTION multiguna_append_only();

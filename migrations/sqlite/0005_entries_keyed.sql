-- Entries keyed by their primary key alone (WITHOUT ROWID). As a rowid table, every
-- entry went into two b-trees: the table by its hidden row id and the primary key's
-- own index. Now the key is the table: one b-tree insert an entry, and its pages hold
-- only the five columns. An entry is five integers, well under the size where a
-- WITHOUT ROWID table pays for itself. PostgreSQL has no row id: nothing to do there.
--
-- The rows are copied once, in key order; an existing ledger takes this at its first
-- start after the upgrade (seconds a million transfers). DROP TABLE fires no trigger,
-- and the append-only triggers are made again on the new table.

CREATE TABLE entries_keyed (
    batch_seq     BIGINT NOT NULL,
    transfer_idx  INTEGER NOT NULL,
    entry_idx     INTEGER NOT NULL,
    account_id    BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    PRIMARY KEY (batch_seq, transfer_idx, entry_idx)
) WITHOUT ROWID;

INSERT INTO entries_keyed (batch_seq, transfer_idx, entry_idx, account_id, amount_minor)
    SELECT batch_seq, transfer_idx, entry_idx, account_id, amount_minor FROM entries
    ORDER BY batch_seq, transfer_idx, entry_idx;

DROP TABLE entries;
ALTER TABLE entries_keyed RENAME TO entries;

CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;

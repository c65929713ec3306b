-- The last two random-order indexes leave the hot tables: a card's transactions and an
-- account's entries are read from the projections (src/ledger/projection.rs), written
-- off the commit path and read together with the ledger's unprojected tail. Together
-- the two indexes halved the switch (docs/performance.md, benches/index_cost.sh).
DROP INDEX IF EXISTS transfers_card;
DROP INDEX IF EXISTS entries_account;

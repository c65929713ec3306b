-- Two indexes nothing reads, dropped from the hot table: every insert into a
-- random-order b-tree dirties a page of its own, and those pages are what a commit
-- writes (docs/performance.md, the profile). A request key is found in memory (the
-- decision journal) and, at start-up, by time; a disbursement line by the partial
-- index transfers_disbursement_once. A ledger lookup by key, when it comes, brings
-- the index it needs.
DROP INDEX IF EXISTS transfers_key;
DROP INDEX IF EXISTS transfers_reference;

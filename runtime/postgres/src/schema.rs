//! The schema, its forward migrations, and the statements every connection prepares once.

/// The schema version this build writes. Older databases are migrated forward when a store connects.
pub const SCHEMA_VERSION: u32 = 1;

/// The advisory lock that serialises migrations when several hosts connect at once.
pub(crate) const MIGRATION_LOCK: i64 = 0x6275_7272_6f77;

/// Forward migrations: entry `i` takes a database from version `i` to `i + 1`.
///
/// Version 1: sessions, inputs and receipts as the SQLite store keeps them (burrow-core's types as JSON beside the
/// searched columns), the lease rows of the fleet, and three functions:
/// - `burrow_now_ms()`: the server's clock, by which every lease is reckoned (one clock for the whole fleet);
/// - `burrow_admit(session, epoch)`: the fence of every commit. It takes the session's lease row FOR SHARE, so no claim
///   can land between the check and the commit, and raises `BR001` unless the row is absent (never claimed) or held
///   at `epoch` (burrow-core's `LeaseRow::admit_write`);
/// - `burrow_update_rows(session, ids, states, attempts)`: updates input rows and raises `BR002`, naming the first
///   missing id, if one was never written, so the commit fails whole.
pub(crate) const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE burrow_sessions (
        session BIGINT PRIMARY KEY,
        lifecycle TEXT,
        operations TEXT,
        snapshot BYTEA
    );
    CREATE TABLE burrow_inputs (
        session BIGINT NOT NULL,
        id BIGINT NOT NULL,
        idempotency_key TEXT,
        record TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT,
        attempts BIGINT,
        PRIMARY KEY (session, id)
    );
    CREATE INDEX burrow_inputs_by_key ON burrow_inputs (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE burrow_receipts (
        session BIGINT NOT NULL,
        run BIGINT NOT NULL,
        sequence BIGINT NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (session, run)
    );
    CREATE INDEX burrow_receipts_by_sequence ON burrow_receipts (session, sequence);
    CREATE TABLE burrow_leases (
        session BIGINT PRIMARY KEY,
        owner BIGINT,
        epoch BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE FUNCTION burrow_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
        $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;
    CREATE FUNCTION burrow_admit(s BIGINT, e BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
    DECLARE
        held RECORD;
    BEGIN
        SELECT owner, epoch INTO held FROM burrow_leases WHERE session = s FOR SHARE;
        IF FOUND AND (held.owner IS NULL OR held.epoch <> e) THEN
            RAISE EXCEPTION USING ERRCODE = 'BR001', MESSAGE = 'fenced';
        END IF;
    END $$;
    CREATE FUNCTION burrow_update_rows(s BIGINT, row_ids BIGINT[], row_states TEXT[], row_attempts BIGINT[])
        RETURNS VOID LANGUAGE plpgsql AS $$
    DECLARE
        i INT;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(row_ids, 1), 0) LOOP
            UPDATE burrow_inputs SET state = row_states[i], attempts = row_attempts[i]
                WHERE session = s AND id = row_ids[i];
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'BR002', MESSAGE = row_ids[i]::TEXT;
            END IF;
        END LOOP;
    END $$;
"];

/// Every statement a connection prepares when it opens, so that a commit sends only Bind and Execute messages and its
/// statements go out together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Q {
    Begin,
    Commit,
    Admit,
    InsertInput,
    UpdateRows,
    InsertReceipt,
    PutSnapshot,
    PutLifecycle,
    PutOperations,
    LoadHead,
    LoadInputs,
    LoadReceipts,
    ByKey,
    Receipt,
    Sessions,
    LeaseEnsure,
    LeaseLock,
    LeasePut,
    LeaseRead,
}

impl Q {
    /// Every statement, in the order a connection prepares and holds them.
    pub(crate) const ALL: [Q; 19] = [
        Q::Begin,
        Q::Commit,
        Q::Admit,
        Q::InsertInput,
        Q::UpdateRows,
        Q::InsertReceipt,
        Q::PutSnapshot,
        Q::PutLifecycle,
        Q::PutOperations,
        Q::LoadHead,
        Q::LoadInputs,
        Q::LoadReceipts,
        Q::ByKey,
        Q::Receipt,
        Q::Sessions,
        Q::LeaseEnsure,
        Q::LeaseLock,
        Q::LeasePut,
        Q::LeaseRead,
    ];

    /// The statement's text.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Q::Begin => "BEGIN",
            Q::Commit => "COMMIT",
            Q::Admit => "SELECT burrow_admit($1, $2)",
            Q::InsertInput => {
                "INSERT INTO burrow_inputs (session, id, idempotency_key, record, payload) VALUES ($1, $2, $3, $4, $5)"
            }
            Q::UpdateRows => "SELECT burrow_update_rows($1, $2, $3, $4)",
            Q::InsertReceipt => "INSERT INTO burrow_receipts (session, run, sequence, receipt) VALUES ($1, $2, $3, $4)",
            Q::PutSnapshot => {
                "INSERT INTO burrow_sessions (session, snapshot) VALUES ($1, $2)
                 ON CONFLICT (session) DO UPDATE SET snapshot = excluded.snapshot"
            }
            Q::PutLifecycle => {
                "INSERT INTO burrow_sessions (session, lifecycle) VALUES ($1, $2)
                 ON CONFLICT (session) DO UPDATE SET lifecycle = excluded.lifecycle"
            }
            Q::PutOperations => {
                "INSERT INTO burrow_sessions (session, operations) VALUES ($1, $2)
                 ON CONFLICT (session) DO UPDATE SET operations = excluded.operations"
            }
            Q::LoadHead => "SELECT lifecycle, operations, snapshot FROM burrow_sessions WHERE session = $1",
            Q::LoadInputs => {
                "SELECT id, record, payload, state, attempts FROM burrow_inputs WHERE session = $1 ORDER BY id"
            }
            Q::LoadReceipts => "SELECT run, receipt FROM burrow_receipts WHERE session = $1 ORDER BY sequence",
            Q::ByKey => {
                "SELECT id, record, payload, state, attempts FROM burrow_inputs
                 WHERE session = $1 AND idempotency_key = $2 ORDER BY id DESC LIMIT 1"
            }
            Q::Receipt => "SELECT receipt FROM burrow_receipts WHERE session = $1 AND run = $2",
            Q::Sessions => "SELECT session FROM burrow_sessions UNION SELECT session FROM burrow_inputs ORDER BY 1",
            // A claim first makes sure the row exists so that it can be locked; a refused claim rolls it back.
            Q::LeaseEnsure => {
                "INSERT INTO burrow_leases (session, owner, epoch, expires_at) VALUES ($1, NULL, 0, 0)
                 ON CONFLICT DO NOTHING"
            }
            Q::LeaseLock => {
                "SELECT owner, epoch, expires_at, burrow_now_ms() FROM burrow_leases WHERE session = $1 FOR UPDATE"
            }
            Q::LeasePut => "UPDATE burrow_leases SET owner = $2, epoch = $3, expires_at = $4 WHERE session = $1",
            Q::LeaseRead => {
                "SELECT l.owner, l.epoch, l.expires_at, burrow_now_ms()
                 FROM (SELECT 1) AS one LEFT JOIN burrow_leases AS l ON l.session = $1"
            }
        }
    }
}

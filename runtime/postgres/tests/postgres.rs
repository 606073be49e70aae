//! The PostgreSQL store against a real server: the store conformance suite every store passes
//! (`runtime/burrow/tests/store_suite`), and what only a shared server shows: hosts racing for a lease, a newer
//! schema, an unreachable server.
//!
//! The server is named by `BURROW_PG_URL` (`cargo xtask test` starts a throwaway cluster and sets it). Each test makes
//! a database of its own. Under `CI=true` a missing or unreachable server fails the tests; elsewhere they say so and
//! pass without running.

#[path = "../../burrow/tests/store_suite/mod.rs"]
mod store_suite;
#[path = "../../burrow/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow::{HostId, SessionId, Store, StoreError};
use burrow_env::time::{Duration, Instant};
use burrow_postgres::{PostgresConfig, PostgresStore, SCHEMA_VERSION};
use tokio_postgres::NoTls;

/// The server's address, or `None` (with the reason printed) when the tests cannot run here.
fn server() -> Option<String> {
    match std::env::var("BURROW_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("BURROW_PG_URL is not set under CI=true: `cargo xtask test` starts a throwaway PostgreSQL cluster")
        }
        _ => {
            eprintln!("BURROW_PG_URL is not set: the PostgreSQL tests do not run (`cargo xtask test` starts a server)");
            None
        }
    }
}

/// A fresh database on the server, and its address.
async fn fresh_database(server: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("burrow_t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    burrow_postgres::scratch_database(server, &name).await.expect("the test server makes a database")
}

/// A store over a fresh database.
async fn store() -> Option<PostgresStore> {
    let server = server()?;
    let url = fresh_database(&server).await;
    Some(PostgresStore::connect(PostgresConfig::new(url)).await.expect("connects and migrates"))
}

/// The conformance suite's subject: a store value over one database (a clone shares it, as a restarted process's
/// new store would).
pub(crate) struct Subject(PostgresStore);

impl Subject {
    async fn postgres() -> Option<Subject> {
        store().await.map(Subject)
    }

    pub(crate) fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.0.clone())
    }
}

macro_rules! postgres_suite {
    ($($body:ident),* $(,)?) => {
        mod conformance {
            $(
                #[burrow_env::test]
                async fn $body() {
                    if let Some(subject) = crate::Subject::postgres().await {
                        crate::store_suite::$body(subject).await;
                    }
                }
            )*
        }
    };
}

postgres_suite!(
    round_trip,
    boundary_commits_are_atomic,
    lifecycle_commits_are_atomic,
    the_recovery_table_holds_after_a_restart,
    dedup_survives_a_restart,
    a_restarted_runtime_finishes_what_was_queued,
    the_key_lookup_reads_the_row_that_holds_the_key,
    an_old_key_past_the_history_is_deduplicated_after_a_restart,
    leases_fence_every_kind_of_write,
    an_expired_lease_is_taken_by_another_host,
);

/// Eight hosts, each with its own pool, claim one session at once: exactly one gets it, the others are told who.
#[burrow_env::test]
async fn hosts_racing_for_a_lease_get_one_owner() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server).await;
    let mut hosts = Vec::new();
    for _ in 0..8 {
        hosts.push(PostgresStore::connect(PostgresConfig::new(url.clone())).await.expect("connects"));
    }
    let session = SessionId(1);
    let claims = hosts.iter().enumerate().map(|(h, store)| store.claim_lease(session, HostId(h as u64 + 1), 60_000));
    let answers = futures_util::future::join_all(claims).await;
    let won: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    let owner = won[0].owner;
    for answer in &answers {
        if let Err(error) = answer {
            assert!(matches!(error, StoreError::Fenced(f) if f.owner == owner), "{error:?}");
        }
    }
    assert_eq!(won[0].epoch.0, 1);
}

/// A database written by a newer schema is refused with a typed error, and left as it was.
#[burrow_env::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server).await;
    drop(PostgresStore::connect(PostgresConfig::new(url.clone())).await.expect("creates the schema"));
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connects");
    drop(burrow_env::task::spawn(connection));
    let newer = (SCHEMA_VERSION + 1).to_string();
    client.execute("UPDATE burrow_meta SET value = $1 WHERE key = 'schema_version'", &[&newer]).await.unwrap();
    let refused = PostgresStore::connect(PostgresConfig::new(url)).await.unwrap_err();
    assert_eq!(refused, StoreError::UnsupportedSchema { found: newer.clone(), supported: SCHEMA_VERSION });
    let row = client.query_one("SELECT value FROM burrow_meta WHERE key = 'schema_version'", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), newer);
}

/// An address where nothing listens is a typed error after the attempts allowed, within their bounds.
#[burrow_env::test]
async fn an_unreachable_server_is_a_typed_error_within_the_bounds() {
    let mut config = PostgresConfig::new("postgresql://burrow@127.0.0.1:1/burrow");
    config.connect_timeout = Duration::from_millis(500);
    config.connect_attempts = 2;
    let started = Instant::now();
    let error = PostgresStore::connect(config).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
}

/// Commits of many sessions share a transaction; one the fence refuses fails alone with its own error, and every
/// other commit of its batch lands. One transaction slot (a pool of two), so the commits that queue behind the first
/// go out together.
#[burrow_env::test]
async fn a_refused_commit_fails_alone_and_the_rest_of_its_batch_lands() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server).await;
    let store = PostgresStore::connect(PostgresConfig { pool_size: 2, ..PostgresConfig::new(url) }).await.unwrap();
    let owned = SessionId(500);
    let row = store.claim_lease(owned, HostId(1), 60_000).await.unwrap();
    let stale = burrow::EpochId(row.epoch.0 + 7);
    let records: Vec<_> = (1..=64u64).map(|i| store_suite::record(i, burrow::InputState::Queued, 0)).collect();
    let target = |i: usize| if i == 31 { (owned, stale) } else { (SessionId(1_000 + i as u64), burrow::EpochId(0)) };
    let writes = records.iter().enumerate().map(|(i, record)| {
        let (session, epoch) = target(i);
        store.persist_input(session, epoch, record, "x")
    });
    let answers = futures_util::future::join_all(writes).await;
    for (i, answer) in answers.iter().enumerate() {
        if i == 31 {
            assert!(matches!(answer, Err(StoreError::Fenced(f)) if f.current == row.epoch), "{answer:?}");
        } else {
            assert_eq!(answer, &Ok(()), "commit {i}");
            let image = store.load(target(i).0).await.unwrap().expect("landed");
            assert_eq!(image.inputs.iter().map(|r| r.record.id.0).collect::<Vec<_>>(), vec![i as u64 + 1]);
        }
    }
    assert!(store.load(owned).await.unwrap().is_none(), "the refused commit changed nothing");
}

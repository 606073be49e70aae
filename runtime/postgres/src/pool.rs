//! A small connection pool: at most `size` connections, each with every statement prepared once, handed out one
//! caller at a time. A caller waits for a connection at most `acquire_timeout`; opening one is tried
//! `connect_attempts` times, each bounded by `connect_timeout`, with a short pause between. A connection that broke
//! is dropped when it comes back, and the next caller opens a fresh one.

use std::sync::{Arc, Mutex};

use burrow::StoreError;
use burrow_env::sync::{OwnedSemaphorePermit, Semaphore};
use burrow_env::time::{Duration, sleep, timeout};
use tokio_postgres::{Client, NoTls, Statement};

use crate::PostgresConfig;
use crate::schema::Q;

/// One connection with its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: Vec<Statement>,
}

impl Conn {
    /// The prepared statement `q`.
    pub(crate) fn st(&self, q: Q) -> &Statement {
        &self.statements[Q::ALL.iter().position(|x| *x == q).expect("every statement is prepared")]
    }
}

/// The pool.
pub(crate) struct Pool {
    config: PostgresConfig,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection lent to one caller; it goes back to the pool when dropped, unless it broke.
pub(crate) struct Lent<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() {
                self.pool.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
            }
        }
    }
}

impl Pool {
    pub(crate) fn new(config: PostgresConfig) -> Pool {
        let permits = Arc::new(Semaphore::new(config.pool_size.max(1)));
        Pool { config, idle: Mutex::new(Vec::new()), permits }
    }

    /// A connection: an idle one, or a new one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when no connection came free within the acquire timeout, or the server could not
    /// be reached in the attempts allowed.
    pub(crate) async fn get(&self) -> Result<Lent<'_>, StoreError> {
        let wait = self.config.acquire_timeout;
        let permit = timeout(wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| unavailable(format!("no connection came free within {} ms", wait.as_millis())))?
            .map_err(|_| unavailable("the pool is closed"))?;
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => self.open().await?,
        };
        Ok(Lent { conn: Some(conn), pool: self, _permit: permit })
    }

    async fn open(&self) -> Result<Conn, StoreError> {
        let attempts = self.config.connect_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.open_once().await {
                Ok(conn) => return Ok(conn),
                Err(error) => last = error,
            }
            if attempt < attempts {
                sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
        Err(unavailable(format!("could not connect in {attempts} attempts: {last}")))
    }

    async fn open_once(&self) -> Result<Conn, String> {
        let limit = self.config.connect_timeout;
        let (client, connection) = timeout(limit, tokio_postgres::connect(&self.config.url, NoTls))
            .await
            .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
            .map_err(|e| e.to_string())?;
        drop(burrow_env::task::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        }));
        let prepared = Q::ALL.iter().map(|q| client.prepare(q.sql()));
        let statements = timeout(limit, futures_util::future::try_join_all(prepared))
            .await
            .map_err(|_| format!("statements not prepared within {} ms", limit.as_millis()))?
            .map_err(|e| e.to_string())?;
        Ok(Conn { client, statements })
    }
}

pub(crate) fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::Unavailable { message: message.into() }
}

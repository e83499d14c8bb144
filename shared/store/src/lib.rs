//! SQL connection pools (sqlx `Any`: one code path, and portable SQL, for SQLite and PostgreSQL).
//!
//! SQLite runs in WAL mode with a busy timeout, and `synchronous=FULL` so that a committed
//! transaction survives a power cut before we ack the message that caused it. A PostgreSQL
//! database named in the URL is created on first start if it does not exist, so one server can
//! hold one database per service without set-up by hand.

use std::sync::Arc;
use std::time::Duration;

use oms_domain::{CustomerId, EventId, OrderId, ProductId};

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::MigrateDatabase;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Executor, Row};
use tokio::sync::OwnedMutexGuard;

/// Opens a pool on `url`, creating the SQLite file (and its folder) if needed.
pub async fn connect(url: &str) -> Result<AnyPool, sqlx::Error> {
    install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    if sqlite
        && let Some(dir) = sqlite_path(url).and_then(|p| p.parent().map(|d| d.to_path_buf()))
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(&dir).map_err(sqlx::Error::Io)?;
    }
    if !sqlite && !Any::database_exists(url).await? {
        // Another instance may create it at the same moment: only a second look decides.
        if let Err(e) = Any::create_database(url).await
            && !Any::database_exists(url).await?
        {
            return Err(e);
        }
    }
    AnyPoolOptions::new()
        // SQLite has one writer at a time. With one connection, writers queue in the pool and
        // each is woken the moment the one before commits; with several they would collide on
        // the database lock and sleep in SQLite's busy handler (1, 2, 5, 10, … ms), which is
        // where latency spikes of hundreds of milliseconds came from. Reads are single short
        // statements and take their turn.
        .max_connections(if sqlite { 1 } else { 8 })
        .acquire_timeout(Duration::from_secs(10))
        // A liveness check before every acquire is a round trip to the connection (for SQLite
        // to its worker thread) per transaction; a dead connection fails its statement instead,
        // which is a transient error (NAK, redelivery) and makes the pool replace it.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes fails at once
/// with "database is locked" when another writer got in between, instead of waiting its turn.
pub async fn begin_write(
    pool: &AnyPool,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    if is_sqlite(pool) {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

/// The writers of one service's database, taking turns in the order they asked (the lock is
/// fair). With batches overlapping (PostgreSQL), one batch writes while the one before waits
/// for its PubAcks, but two never write at once: two transactions creating and moving the same
/// rows deadlocked on their row locks (PostgreSQL resolves that only after a second), and stock
/// must go first come, first served. (Another instance's writer is caught by the guards of the
/// statements themselves.)
#[derive(Clone)]
pub struct Writer {
    pool: AnyPool,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction holding its writer's turn until it is committed or dropped.
pub struct Turn {
    tx: sqlx::Transaction<'static, Any>,
    _turn: OwnedMutexGuard<()>,
}

impl Writer {
    pub fn new(pool: AnyPool) -> Self {
        Writer {
            pool,
            turn: Arc::default(),
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for the turn, then begins a write transaction ([`begin_write`]).
    pub async fn begin(&self) -> Result<Turn, sqlx::Error> {
        let turn = self.turn.clone().lock_owned().await;
        Ok(Turn {
            tx: begin_write(&self.pool).await?,
            _turn: turn,
        })
    }

    /// Waits for the turn, for a write outside a transaction.
    pub async fn turn(&self) -> OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }
}

impl Turn {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Turn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Turn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// Batches a service takes at once on this pool (see `oms_bus::Step::in_flight`): two on
/// PostgreSQL, which writes the next batch while the one before waits for its PubAcks; one on
/// SQLite, which has one writer (figures in `docs/performance.md`).
pub fn batches_at_once(pool: &AnyPool) -> usize {
    if is_sqlite(pool) { 1 } else { 2 }
}

pub fn is_sqlite(pool: &AnyPool) -> bool {
    pool.connect_options()
        .database_url
        .scheme()
        .starts_with("sqlite")
}

/// The file behind a `sqlite://path?opts` URL.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Rows per multi-row statement: far below the bind limits of SQLite (32,766) and PostgreSQL
/// (65,535) for the widest rows we write.
pub const MAX_ROWS: usize = 500;

/// How a backend wants the bind parameters of a statement built at run time: PostgreSQL
/// only takes numbered ones (`$1`); SQLite takes those too, but looks every named parameter up
/// by a linear scan, which makes a statement with a thousand of them slow to bind, so it gets
/// anonymous ones (`?`, bound in order of appearance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    Numbered,
    Anonymous,
}

impl Params {
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name() == "SQLite" {
            Params::Anonymous
        } else {
            Params::Numbered
        }
    }

    /// The parameter at 1-based position `n`.
    fn param(self, sql: &mut String, n: usize) {
        match self {
            Params::Numbered => {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            Params::Anonymous => sql.push('?'),
        }
    }

    /// `($1, $2), ($3, $4), …`: `rows` tuples of `columns` parameters, for writing a batch in
    /// one statement.
    pub fn tuples(self, rows: usize, columns: usize) -> String {
        let mut sql = String::with_capacity(rows * columns * 5);
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                self.param(&mut sql, row * columns + column + 1);
            }
            sql.push(')');
        }
        sql
    }

    /// `$first, …`: `n` parameters for an `IN (…)` list, numbered from `first`.
    pub fn list(self, first: usize, n: usize) -> String {
        let mut sql = String::with_capacity(n * 5);
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            self.param(&mut sql, first + i);
        }
        sql
    }

    /// `CASE key WHEN $first THEN $first+1 … END`: `n` pairs of parameters numbered from
    /// `first`, for giving each row of a multi-row `UPDATE` its own value.
    pub fn case(self, key: &str, first: usize, n: usize) -> String {
        let mut sql = format!("CASE {key}");
        for i in 0..n {
            sql.push_str(" WHEN ");
            self.param(&mut sql, first + 2 * i);
            sql.push_str(" THEN ");
            self.param(&mut sql, first + 2 * i + 1);
        }
        sql.push_str(" END");
        sql
    }
}

/// A value bound to a statement of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_owned))
    }
}

/// Ids are stored in their text form.
macro_rules! id_values {
    ($($id:ty),*) => {$(
        impl From<$id> for Value {
            fn from(v: $id) -> Self {
                Value::Text(Some(v.to_string()))
            }
        }

        impl From<&$id> for Value {
            fn from(v: &$id) -> Self {
                Value::Text(Some(v.to_string()))
            }
        }
    )*};
}

id_values!(OrderId, EventId, CustomerId, ProductId);

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

/// What one statement of a [`Script`] returned.
#[derive(Default)]
pub struct StatementResult {
    pub rows: Vec<AnyRow>,
    pub affected: u64,
}

/// The statements a [`Script`] added for one purpose (one per chunk of a batch), to read their
/// outcome after [`Script::run`].
#[derive(Debug, Clone, Default)]
pub struct Part(std::ops::Range<usize>);

impl Part {
    /// The rows of all its statements.
    pub fn rows<'a>(&self, outcomes: &'a [StatementResult]) -> impl Iterator<Item = &'a AnyRow> {
        outcomes[self.0.clone()].iter().flat_map(|o| o.rows.iter())
    }

    /// The rows its statements affected, in all.
    pub fn affected(&self, outcomes: &[StatementResult]) -> u64 {
        outcomes[self.0.clone()].iter().map(|o| o.affected).sum()
    }

    /// The outcome of each of its statements.
    pub fn each<'a>(&self, outcomes: &'a [StatementResult]) -> &'a [StatementResult] {
        &outcomes[self.0.clone()]
    }
}

/// Statements that do not depend on each other's results, run as one step (of a transaction,
/// where there is one).
///
/// On SQLite every statement is a hand-off to the connection's worker thread and back, which
/// costs more than SQLite itself spends on most statements of a small batch
/// (`docs/performance.md`). So SQLite runs the whole script as one multi-statement query: one
/// hand-off, its `?` parameters bound in order across the statements. (sqlx marks this
/// SQLite-only ability deprecated, issue 3108, but keeps it in 0.9; the guarantee tests run
/// every script on it.) PostgreSQL takes one statement per prepared query, so there they run
/// one after another.
///
/// Not `sqlx::QueryBuilder`: it builds one statement, with `$N` parameters on `Any`; a script
/// is several statements in one SQLite hand-off with `?` ones, which is what measured faster.
pub struct Script {
    params: Params,
    statements: Vec<(String, Vec<Value>)>,
}

impl Script {
    pub fn new(conn: &AnyConnection) -> Self {
        Script {
            params: Params::of(conn),
            statements: Vec::new(),
        }
    }

    /// How this connection's statements take their parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The number of statements added so far.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// The statements added since there were `first`.
    pub fn since(&self, first: usize) -> Part {
        Part(first..self.statements.len())
    }

    /// Adds a statement (without a trailing `;`) and the values of its parameters, in order.
    pub fn push(&mut self, sql: String, values: Vec<Value>) -> Part {
        let at = self.statements.len();
        self.statements.push((sql, values));
        Part(at..at + 1)
    }

    /// Adds `sql`, in which `{keys}` stands for an `IN` list, once per chunk of `keys`.
    pub fn push_in<K: ToString>(&mut self, sql: &str, keys: &[K]) -> Part {
        let first = self.len();
        for chunk in keys.chunks(MAX_ROWS) {
            let sql = sql.replace("{keys}", &self.params.list(1, chunk.len()));
            let values = chunk.iter().map(|k| Value::from(k.to_string())).collect();
            self.statements.push((sql, values));
        }
        self.since(first)
    }

    /// Adds `sql`, in which `{rows}` stands for `(…), (…)` tuples of parameters, once per
    /// chunk of `rows`, each row giving its tuple's values: writing a batch in one statement
    /// per chunk.
    pub fn push_rows<T, const N: usize>(
        &mut self,
        sql: &str,
        rows: &[T],
        values: impl Fn(&T) -> [Value; N],
    ) -> Part {
        let first = self.len();
        for chunk in rows.chunks(MAX_ROWS) {
            let sql = sql.replace("{rows}", &self.params.tuples(chunk.len(), N));
            let values = chunk.iter().flat_map(&values).collect();
            self.statements.push((sql, values));
        }
        self.since(first)
    }

    /// Runs the statements in order; returns the outcome of each.
    pub async fn run(self, conn: &mut AnyConnection) -> Result<Vec<StatementResult>, sqlx::Error> {
        use futures::TryStreamExt;
        let expected = self.statements.len();
        let mut outcomes = Vec::with_capacity(expected);
        let queries: Vec<(String, Vec<Value>)> = match self.params {
            _ if self.statements.is_empty() => return Ok(outcomes),
            Params::Anonymous => {
                let mut sql = String::new();
                let mut values = Vec::new();
                for (s, v) in self.statements {
                    sql.push_str(&s);
                    sql.push_str(";\n");
                    values.extend(v);
                }
                vec![(sql, values)]
            }
            Params::Numbered => self.statements,
        };
        for (sql, values) in queries {
            let query = values
                .into_iter()
                .fold(sqlx::query(AssertSqlSafe(sql)), |q, v| match v {
                    Value::Text(t) => q.bind(t),
                    Value::Int(i) => q.bind(i),
                });
            let mut results = conn.fetch_many(query);
            let mut rows = Vec::new();
            while let Some(step) = results.try_next().await? {
                match step {
                    sqlx::Either::Right(row) => rows.push(row),
                    sqlx::Either::Left(done) => outcomes.push(StatementResult {
                        rows: std::mem::take(&mut rows),
                        affected: done.rows_affected(),
                    }),
                }
            }
        }
        if outcomes.len() != expected {
            return Err(sqlx::Error::Protocol(format!(
                "a script of {expected} statements returned {} results",
                outcomes.len()
            )));
        }
        Ok(outcomes)
    }
}

/// Runs `sql`, in which `{keys}` stands for an `IN` list, once per chunk of `keys` (bound as
/// text) and returns the rows of all chunks: reading the state of a whole batch in one go.
pub async fn fetch_in<K: ToString>(
    conn: &mut AnyConnection,
    sql: &'static str,
    keys: &[K],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let params = Params::of(conn);
    let mut rows = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_ROWS) {
        rows.extend(in_query(params, sql, chunk).fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// Like [`fetch_in`], for a statement without rows; returns the rows it affected.
pub async fn execute_in<K: ToString>(
    conn: &mut AnyConnection,
    sql: &'static str,
    keys: &[K],
) -> Result<u64, sqlx::Error> {
    let params = Params::of(conn);
    let mut affected = 0;
    for chunk in keys.chunks(MAX_ROWS) {
        affected += in_query(params, sql, chunk)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(affected)
}

/// `sql` with `{keys}` replaced by the parameters of `keys`, and those bound.
fn in_query<K: ToString>(
    params: Params,
    sql: &str,
    keys: &[K],
) -> sqlx::query::Query<'static, Any, AnyArguments> {
    let sql = sql.replace("{keys}", &params.list(1, keys.len()));
    keys.iter()
        .fold(sqlx::query(AssertSqlSafe(sql)), |query, key| {
            query.bind(key.to_string())
        })
}

/// An id (or a UUID) stored as text.
pub fn id<T>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Current time as Unix microseconds, the portable way timestamps are stored.
pub fn now_micros() -> i64 {
    to_micros(time::OffsetDateTime::now_utc())
}

pub fn to_micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub fn from_micros(micros: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/x.db?mode=rwc"),
            Some("data/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[test]
    fn placeholders() {
        let (n, a) = (Params::Numbered, Params::Anonymous);
        assert_eq!(n.tuples(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(a.tuples(2, 2), "(?, ?), (?, ?)");
        assert_eq!(n.tuples(1, 1), "($1)");
        assert_eq!(n.list(2, 3), "$2, $3, $4");
        assert_eq!(a.list(2, 3), "?, ?, ?");
        assert_eq!(
            n.case("k", 3, 2),
            "CASE k WHEN $3 THEN $4 WHEN $5 THEN $6 END"
        );
        assert_eq!(a.case("k", 1, 1), "CASE k WHEN ? THEN ? END");
    }

    #[test]
    fn micros_round_trip() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}

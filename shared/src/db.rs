//! SQL connection pools (sqlx `Any`: one code path, and portable SQL, for SQLite and PostgreSQL).
//!
//! SQLite runs in WAL mode with a busy timeout, and `synchronous=FULL` so that a committed
//! transaction survives a power cut before we ack the message that caused it. A PostgreSQL
//! database named in the URL is created on first start if it does not exist, so one server can
//! hold one database per service without set-up by hand.

use std::time::Duration;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Executor, Row};

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

/// Runs the migrations of the pool's backend.
pub async fn migrate(
    pool: &AnyPool,
    sqlite: &Migrator,
    postgres: &Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    if is_sqlite(pool) {
        sqlite.run(pool).await
    } else {
        postgres.run(pool).await
    }
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

/// A UUID stored as text.
pub fn uuid(row: &AnyRow, column: &str) -> Result<uuid::Uuid, sqlx::Error> {
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
    }

    #[test]
    fn micros_round_trip() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}

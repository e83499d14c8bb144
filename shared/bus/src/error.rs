//! What can go wrong on the bus, and what a handler says about an event it could not process.

use async_nats::jetstream;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("no broker credentials: {0} (oms-provision creds makes them)")]
    Credentials(String),
    #[error("publish to {subject} failed: {source}")]
    Publish {
        subject: String,
        #[source]
        source: jetstream::context::PublishError,
    },
}

impl BusError {
    /// The stream refused the event because it holds all the bytes it may (discard new): retry
    /// later, once an operator has made room; nothing was stored.
    pub fn is_store_full(&self) -> bool {
        match self {
            BusError::Publish { source, .. } => {
                let text = source.to_string();
                text.contains("maximum bytes exceeded")
                    || text.contains("maximum messages exceeded")
                    || text.contains("insufficient resources")
            }
            _ => false,
        }
    }
}

/// What a handler says about a message it could not process.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Might work later (database busy, NATS timeout): NAK with delay, redeliver.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Can never work: straight to the DLQ.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// Another writer changed what was read (a compare-and-set lost): read and decide again
    /// at once ([`crate::Pipeline`]); past its attempts, like `Transient`.
    #[error("conflict: {0:#}")]
    Conflict(anyhow::Error),
}

impl HandleError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        HandleError::Transient(e.into())
    }

    pub fn conflict(why: impl std::fmt::Display) -> Self {
        HandleError::Conflict(anyhow::anyhow!("{why}"))
    }
}

/// A statement the database refused for a constraint fails the same way every time: straight to
/// the DLQ. Everything else (busy, a dropped connection, a pool timeout) may pass later.
/// A unique violation stays transient: on PostgreSQL it is how two instances that raced on one
/// order find out, and the retry sees the winner's row (a placed and a rejected event of one
/// order both insert its reservation in inventory; a DLQ there would leak stock).
impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let permanent = match &e {
            sqlx::Error::Database(db) => matches!(
                db.kind(),
                ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation
            ),
            _ => false,
        };
        match permanent {
            true => HandleError::Permanent(e.into()),
            false => HandleError::Transient(e.into()),
        }
    }
}

impl From<BusError> for HandleError {
    fn from(e: BusError) -> Self {
        HandleError::Transient(e.into())
    }
}

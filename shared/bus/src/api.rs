//! The read API over the NATS service API (so `nats micro ls` lists it): a server loop and a
//! client call. Answers are JSON; a failure is sent the service-API way, as
//! `Nats-Service-Error-Code` and `Nats-Service-Error` headers with an empty body.

use std::future::Future;

use async_nats::service::{Request, error::Error as ServiceError};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Why a read was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request contradicts what is stored (an id that exists already).
    #[error("{0}")]
    Conflict(String),
    /// The service is reachable but failed (a database error); details stay in its log.
    #[error("{0}")]
    Internal(String),
    /// Nobody answered: NATS is down or no instance of the service runs.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn code(&self) -> usize {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Conflict(_) => 409,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        warn!(error = %e, "read failed");
        ApiError::Internal("the service could not read its store".into())
    }
}

/// Answers requests on one endpoint until `shutdown`, many at a time.
pub async fn serve<Req, Resp, F, Fut>(
    endpoint: async_nats::service::endpoint::Endpoint,
    shutdown: CancellationToken,
    handler: F,
) where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Result<Resp, ApiError>>,
{
    endpoint
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(64, |request: Request| {
            let handler = &handler;
            async move {
                let answer = match serde_json::from_slice::<Req>(&request.message.payload) {
                    Ok(req) => handler(req).await,
                    Err(e) => Err(ApiError::BadRequest(format!("bad request: {e}"))),
                };
                let reply = match answer {
                    Ok(resp) => Ok(serde_json::to_vec(&resp)
                        .expect("read models always serialize")
                        .into()),
                    Err(e) => Err(ServiceError {
                        code: e.code(),
                        status: e.to_string(),
                    }),
                };
                if let Err(e) = request.respond(reply).await {
                    warn!(error = %e, "could not answer a request");
                }
            }
        })
        .await;
}

/// Calls an endpoint and decodes the answer.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    request: &Req,
) -> Result<Resp, ApiError> {
    use async_nats::RequestErrorKind;
    let payload = serde_json::to_vec(request).expect("requests always serialize");
    let message = client
        .request(subject, payload.into())
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => {
                ApiError::Unavailable(format!("no service answers {subject}"))
            }
            RequestErrorKind::TimedOut => {
                ApiError::Unavailable(format!("{subject} did not answer in time"))
            }
            _ => ApiError::Unavailable(format!("NATS unavailable: {e}")),
        })?;
    if let Some(headers) = &message.headers
        && let Some(code) = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)
    {
        let text = headers
            .get(async_nats::service::NATS_SERVICE_ERROR)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        return Err(match code.as_str() {
            "404" => ApiError::NotFound(text),
            "400" => ApiError::BadRequest(text),
            "409" => ApiError::Conflict(text),
            _ => ApiError::Internal(text),
        });
    }
    serde_json::from_slice(&message.payload)
        .map_err(|e| ApiError::Internal(format!("unreadable answer from {subject}: {e}")))
}

//! The edge's one error type: every failure becomes `application/problem+json`
//! (`type`, `title`, `status`, `detail`) with a detail a person understands. Database and broker
//! messages stay in the log.

use std::convert::Infallible;

use oms_auth::Refusal;
use oms_bus::api::ApiError;
use serde::Serialize;
use warp::http::header::{HeaderName, WWW_AUTHENTICATE};
use warp::http::{HeaderValue, StatusCode};
use warp::reject::Reject;
use warp::{Rejection, Reply};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// Short machine-friendly kind, the last part of `type`.
    pub kind: &'static str,
    pub detail: String,
    /// Extra headers of the answer (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reject for Problem {}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            kind,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 422: JSON that breaks a rule.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 503: the bus (or the service behind it) cannot be reached.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(d) => Problem::not_found(d),
            ApiError::BadRequest(d) => Problem::invalid(d),
            ApiError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "conflict", d),
            ApiError::Unavailable(d) => {
                Problem::unavailable(format!("the service is unreachable: {d}"))
            }
            ApiError::Internal(d) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the service failed to answer: {d}"),
            ),
        }
    }
}

impl From<&Refusal> for Problem {
    /// 401 or 403, with its `WWW-Authenticate` challenge.
    fn from(refusal: &Refusal) -> Self {
        let kind = match refusal.status {
            StatusCode::FORBIDDEN => "forbidden",
            _ => "unauthorized",
        };
        let value = HeaderValue::from_str(&refusal.challenge())
            .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer realm="oms""#));
        Problem::new(refusal.status, kind, refusal.detail.clone())
            .with_header(WWW_AUTHENTICATE, value)
    }
}

/// The body of every error answer (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemBody<'a> {
    /// `/problems/<kind>`, such as `/problems/invalid-request`.
    #[schema(examples("/problems/not-found"))]
    r#type: String,
    /// The status's reason phrase.
    #[schema(examples("Not Found"))]
    title: &'a str,
    /// The HTTP status.
    #[schema(examples(404))]
    status: u16,
    /// What went wrong, for a person.
    detail: &'a str,
}

impl Reply for Problem {
    fn into_response(self) -> warp::reply::Response {
        let body = ProblemBody {
            r#type: format!("/problems/{}", self.kind),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let json = serde_json::to_vec(&body).expect("a problem always serializes");
        let mut response = warp::reply::Response::new(json.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            warp::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// Turns every rejection, ours or warp's, into a problem.
pub async fn recover(rejection: Rejection) -> Result<Problem, Infallible> {
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader,
        PayloadTooLarge, UnsupportedMediaType,
    };
    let problem = if let Some(p) = rejection.find::<Problem>() {
        p.clone()
    } else if rejection.is_not_found() {
        Problem::not_found("no such resource")
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this method is not allowed on this resource",
        )
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "the body is larger than 64 KiB",
        )
    } else if rejection.find::<UnsupportedMediaType>().is_some() {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as Content-Type: application/json",
        )
    } else if rejection.find::<LengthRequired>().is_some() {
        Problem::new(
            StatusCode::LENGTH_REQUIRED,
            "length-required",
            "the body needs a length",
        )
    } else if let Some(e) = rejection.find::<InvalidHeader>() {
        Problem::new(StatusCode::BAD_REQUEST, "bad-header", e.to_string())
    } else if let Some(e) = rejection.find::<MissingHeader>() {
        Problem::new(StatusCode::BAD_REQUEST, "bad-header", e.to_string())
    } else if let Some(e) = rejection.find::<InvalidQuery>() {
        Problem::invalid(format!("invalid query string: {e}"))
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be handled",
        )
    };
    Ok(problem)
}

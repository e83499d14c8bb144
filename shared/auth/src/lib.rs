//! Who is calling: bearer tokens (JWT) verified once per request, before any handler runs.
//!
//! A token is HS256 with the installation's secret (`auth.hs256_secret`, else the file
//! `<creds_dir>/edge-jwt.secret`), or RS256/ES256 with a key from the JWKS named by `auth.jwks`.
//! Each key accepts exactly one algorithm, fixed by its type (a secret HS256, an RSA key RS256, a
//! P-256 key ES256), so neither `alg: none` (not even parsed) nor a token that names another
//! algorithm than its key's (algorithm confusion) gets in. `exp`, `iss`, `aud` and `sub` are
//! required; `role` is `customer` or `operator`.
//!
//! [`Authenticator::authenticate`] turns the `Authorization` header into an [`Authentication`];
//! the server puts it into the request, and [`crate::caller`] hands handlers a [`Caller`] or
//! answers 401/403. What a caller may do is decided in [`crate::authz`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, StatusCode, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oms_config::AuthConfig;
use oms_config::Config;
use oms_domain::ids::is_valid_id;
use serde::{Deserialize, Serialize};

pub mod es256;
#[cfg(any(test, feature = "testing"))]
pub mod testkeys;

/// The file, in the credentials folder, that holds the installation's HS256 secret.
pub const SECRET_FILE: &str = "edge-jwt.secret";

/// Below this many bytes an HS256 secret can be guessed (RFC 7518 §3.2 asks for 256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// Clock skew allowed on `exp` (and `nbf` when present).
pub const LEEWAY_SECS: u64 = 60;

/// What a caller is to the OMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// A customer: `sub` is its customer id.
    Customer,
    /// Staff: `sub` is the operator's name.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Role> {
        text.parse().ok()
    }
}

/// An authenticated caller: the token's `sub` and `role`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
}

impl Caller {
    pub fn customer(id: &str) -> Caller {
        Caller {
            sub: id.into(),
            role: Role::Customer,
        }
    }

    pub fn operator(name: &str) -> Caller {
        Caller {
            sub: name.into(),
            role: Role::Operator,
        }
    }

    /// Who an Idempotency-Key belongs to: role and subject, so a customer and an operator of
    /// the same name never share keys either.
    pub fn scope(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.sub)
    }
}

/// The claims the edge issues (and [`mint`] writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    /// Seconds since the epoch.
    pub iat: u64,
    /// Seconds since the epoch.
    pub exp: u64,
}

impl Claims {
    /// Claims for `sub` as `role`, valid from now for `ttl`, for the issuer and audience of `cfg`.
    pub fn new(cfg: &AuthConfig, sub: &str, role: Role, ttl: Duration) -> Claims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Claims {
            sub: sub.into(),
            role,
            iss: cfg.issuer.clone(),
            aud: cfg.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        }
    }
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 over serializable claims cannot fail")
}

/// A token for `sub` as `role`, valid for `ttl`: HS256 with `secret` (the same bytes the edge
/// verifies with, see [`hs256_secret`]), `iss`/`aud` from `cfg`. What `oms-token`, the tests and
/// loadgen use.
pub fn mint(cfg: &AuthConfig, secret: &[u8], sub: &str, role: Role, ttl: Duration) -> String {
    sign(&Claims::new(cfg, sub, role, ttl), secret)
}

/// Why the edge cannot check tokens as configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "auth is enabled but no key is configured: set auth.hs256_secret \
         (OMS_AUTH__HS256_SECRET), provision {0} (32 random bytes, base64url, one line), \
         or name a JWKS in auth.jwks (OMS_AUTH__JWKS)"
    )]
    NoKey(PathBuf),
    #[error("cannot read {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the HS256 secret is {0} bytes; it needs at least {MIN_SECRET_LEN}")]
    ShortSecret(usize),
    #[error(
        "auth.enabled = false is allowed only in the dev profile (this is {0:?}); \
         set OMS_PROFILE=dev, or keep auth on"
    )]
    DisabledOutsideDev(String),
    #[error(
        "auth.enabled = false is allowed only on a loopback address, and the edge listens on \
         {0}; bind 127.0.0.1 (http.bind), or keep auth on"
    )]
    DisabledNotLoopback(SocketAddr),
    #[error("cannot load the JWKS {source_name}: {detail}")]
    Jwks { source_name: String, detail: String },
}

/// The HS256 secret: `auth.hs256_secret`, else the trimmed text of `<creds_dir>/edge-jwt.secret`
/// if that file exists; `None` when neither is there. Its bytes are used as they are (the
/// base64url text is the secret, not decoded).
pub fn hs256_secret(config: &Config) -> Result<Option<Vec<u8>>, SetupError> {
    let secret = if !config.auth.hs256_secret.is_empty() {
        config.auth.hs256_secret.trim().as_bytes().to_vec()
    } else {
        let path = secret_path(config);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().as_bytes().to_vec(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SetupError::SecretFile { path, source }),
        }
    };
    if secret.len() < MIN_SECRET_LEN {
        return Err(SetupError::ShortSecret(secret.len()));
    }
    Ok(Some(secret))
}

/// Where the provisioned HS256 secret lives.
pub fn secret_path(config: &Config) -> PathBuf {
    config.creds_dir().join(SECRET_FILE)
}

/// Whether auth may be off: only in the `dev` profile, only on loopback.
pub fn may_disable(profile: &str, local: SocketAddr) -> Result<(), SetupError> {
    if profile != "dev" {
        return Err(SetupError::DisabledOutsideDev(profile.into()));
    }
    if !local.ip().to_canonical().is_loopback() {
        return Err(SetupError::DisabledNotLoopback(local));
    }
    Ok(())
}

/// One verification key with the one algorithm it accepts.
struct Key {
    kid: Option<String>,
    validation: Validation,
    key: DecodingKey,
}

impl Key {
    fn new(cfg: &AuthConfig, alg: Algorithm, kid: Option<String>, key: DecodingKey) -> Key {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Key {
            kid,
            validation,
            key,
        }
    }

    fn alg(&self) -> Algorithm {
        self.validation.algorithms[0]
    }
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    keys: Vec<Key>,
}

/// The claims the edge reads; `exp`, `iss`, `aud` are checked by jsonwebtoken.
#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    role: String,
}

impl Verifier {
    /// HS256 with `secret` (if any) and the keys of `jwks` (if any).
    pub fn new(cfg: &AuthConfig, secret: Option<&[u8]>, jwks: Option<&JwkSet>) -> Verifier {
        let mut keys = Vec::new();
        if let Some(secret) = secret {
            keys.push(Key::new(
                cfg,
                Algorithm::HS256,
                None,
                DecodingKey::from_secret(secret),
            ));
        }
        for jwk in jwks.map(|s| s.keys.as_slice()).unwrap_or_default() {
            let kid = jwk.common.key_id.clone();
            let name = kid.as_deref().unwrap_or("without kid");
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                tracing::warn!(kid = name, "JWKS key not for signatures, skipped");
                continue;
            }
            // The key's type fixes its algorithm; a key that declares another is not used.
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    tracing::warn!(kid = name, "JWKS key neither RSA nor P-256, skipped");
                    continue;
                }
            };
            let declared_other = match jwk.common.key_algorithm {
                None => false,
                Some(KeyAlgorithm::RS256) => alg != Algorithm::RS256,
                Some(KeyAlgorithm::ES256) => alg != Algorithm::ES256,
                Some(_) => true,
            };
            if declared_other {
                tracing::warn!(kid = name, "JWKS key declares another algorithm, skipped");
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(Key::new(cfg, alg, kid, key)),
                Err(e) => tracing::warn!(kid = name, error = %e, "unusable JWKS key, skipped"),
            }
        }
        Verifier { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller a token stands for, or why it does not get in.
    pub fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        // `alg: none` (or any unknown algorithm) fails here: jsonwebtoken has no such variant.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::invalid("the token is not a well-formed JWT"))?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.alg() == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::invalid(format!(
                "tokens signed with {:?} are not accepted here",
                header.alg
            )));
        }
        let mut refusal = None;
        for key in candidates {
            match jsonwebtoken::decode::<TokenClaims>(token, &key.key, &key.validation) {
                Ok(data) => return caller(data.claims),
                Err(e) => refusal = Some(refusal_for(e.kind())),
            }
        }
        Err(refusal.expect("at least one key was tried"))
    }
}

fn caller(claims: TokenClaims) -> Result<Caller, Refusal> {
    if !is_valid_id(&claims.sub) {
        return Err(Refusal::invalid(
            "the token's sub must be 1 to 64 characters of letters, digits, '.', '_' or '-'",
        ));
    }
    let role = Role::parse(&claims.role).ok_or_else(|| {
        Refusal::forbidden("the token's role may not use this API (customer or operator)")
    })?;
    Ok(Caller {
        sub: claims.sub,
        role,
    })
}

fn refusal_for(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::invalid("the token has expired"),
        ErrorKind::ImmatureSignature => Refusal::invalid("the token is not valid yet"),
        ErrorKind::InvalidSignature => Refusal::invalid("the token's signature is not valid"),
        ErrorKind::InvalidAudience => Refusal::invalid("the token is for another audience"),
        ErrorKind::InvalidIssuer => Refusal::invalid("the token is from another issuer"),
        ErrorKind::InvalidAlgorithm => Refusal::invalid("the token's algorithm is not accepted"),
        ErrorKind::MissingRequiredClaim(claim) => {
            Refusal::invalid(format!("the token has no valid {claim} claim"))
        }
        _ => Refusal::invalid("the token is not a valid JWT for this API"),
    }
}

/// Why a request does not get in: 401 (no or a bad token) or 403 (a valid token without the
/// right), with the `WWW-Authenticate` challenge RFC 6750 describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// RFC 6750 error code: `invalid_token`, `insufficient_scope`, or none without a token.
    pub error: Option<&'static str>,
    pub detail: String,
}

impl Refusal {
    pub fn missing() -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: None,
            detail: "send a token: Authorization: Bearer <JWT> (oms-token mints one)".into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: Some("invalid_token"),
            detail: detail.into(),
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            detail: detail.into(),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750) that goes with the answer.
    pub fn challenge(&self) -> String {
        // The details are fixed texts without quotes, so they fit a quoted-string.
        match self.error {
            None => r#"Bearer realm="oms""#.to_string(),
            Some(error) => format!(
                r#"Bearer realm="oms", error="{error}", error_description="{}""#,
                self.detail
            ),
        }
    }
}

/// What the server learned about a request's caller, put into the request for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// A valid token.
    Caller(Caller),
    /// Auth is off (dev, loopback): every request acts as an operator.
    Anonymous,
    Refused(Refusal),
}

impl Authentication {
    /// The caller handlers act for, or the refusal to answer with.
    pub fn caller(self) -> Result<Caller, Refusal> {
        match self {
            Authentication::Caller(c) => Ok(c),
            Authentication::Anonymous => Ok(Caller::operator("anonymous")),
            Authentication::Refused(r) => Err(r),
        }
    }
}

/// Checks the `Authorization` header of every request.
pub struct Authenticator {
    /// `None`: auth is off.
    verifier: Option<Verifier>,
}

impl Authenticator {
    /// From the config: refuses to start with auth off outside dev or off loopback, or with auth
    /// on and no key. Reads the secret file and loads the JWKS (a file, or fetched over
    /// http(s) once, now).
    pub async fn from_config(config: &Config, local: SocketAddr) -> Result<Self, SetupError> {
        if !config.auth.enabled {
            may_disable(&config.profile, local)?;
            return Ok(Authenticator { verifier: None });
        }
        let secret = hs256_secret(config)?;
        let jwks = match config.auth.jwks.trim() {
            "" => None,
            source => Some(load_jwks(source).await?),
        };
        if secret.is_none() && jwks.is_none() {
            return Err(SetupError::NoKey(secret_path(config)));
        }
        let verifier = Verifier::new(&config.auth, secret.as_deref(), jwks.as_ref());
        if verifier.is_empty() {
            return Err(SetupError::Jwks {
                source_name: config.auth.jwks.clone(),
                detail: "it holds no RS256 or ES256 signing key".into(),
            });
        }
        Ok(Authenticator {
            verifier: Some(verifier),
        })
    }

    /// Auth on, with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Authenticator {
            verifier: Some(verifier),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// The caller behind `headers`' bearer token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Authentication {
        let Some(verifier) = &self.verifier else {
            return Authentication::Anonymous;
        };
        match bearer(headers) {
            Bearer::None => Authentication::Refused(Refusal::missing()),
            Bearer::Malformed => Authentication::Refused(Refusal::invalid(
                "the Authorization header must be: Bearer <JWT>",
            )),
            Bearer::Token(token) => match verifier.verify(token) {
                Ok(caller) => Authentication::Caller(caller),
                Err(refusal) => Authentication::Refused(refusal),
            },
        }
    }

    /// The caller behind a request: its `Authorization` header, as [`Authenticator::authenticate`],
    /// or, on the event streams only, its `access_token` query parameter (RFC 6750 §2.3),
    /// checked by the same verifier. A browser's `EventSource` cannot send a header; a cookie
    /// would be sent by the browser with every request to the edge, cross-site ones too, and
    /// so make every route forgeable (CSRF), where a query parameter is sent only by who holds
    /// the token, and only where the page puts it. The edge logs paths without their query.
    /// A token in both places, or twice in the query, is refused: one request, one token.
    pub fn authenticate_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Authentication {
        let in_query = match *method == Method::GET && is_event_stream(uri.path()) {
            true => query_token(uri.query().unwrap_or_default()),
            false => QueryToken::None,
        };
        let Some(verifier) = &self.verifier else {
            return Authentication::Anonymous;
        };
        match (in_query, headers.contains_key(AUTHORIZATION)) {
            (QueryToken::None, _) => self.authenticate(headers),
            (QueryToken::Token(token), false) => match verifier.verify(token) {
                Ok(caller) => Authentication::Caller(caller),
                Err(refusal) => Authentication::Refused(refusal),
            },
            (QueryToken::Token(_), true) => Authentication::Refused(Refusal::invalid(
                "send the token once: in the Authorization header or as access_token, not both",
            )),
            (QueryToken::Malformed, _) => Authentication::Refused(Refusal::invalid(
                "access_token must be given once, as the JWT itself",
            )),
        }
    }
}

/// Whether `path` is one of the edge's event streams (`/events`, `/orders/{id}/events`): the
/// routes where a token may come in the query.
pub fn is_event_stream(path: &str) -> bool {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match segments.as_slice() {
        ["events"] => true,
        ["orders", id, "events"] => !id.is_empty(),
        _ => false,
    }
}

/// The `access_token` parameter of a query string.
#[derive(Debug, PartialEq, Eq)]
enum QueryToken<'a> {
    None,
    /// Empty, repeated, or percent-encoded (a JWT is base64url and dots: it never needs to be).
    Malformed,
    Token(&'a str),
}

fn query_token(query: &str) -> QueryToken<'_> {
    let mut found = QueryToken::None;
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("access_token=") else {
            continue;
        };
        if found != QueryToken::None || value.is_empty() || value.contains(['%', '+']) {
            return QueryToken::Malformed;
        }
        found = QueryToken::Token(value);
    }
    found
}

enum Bearer<'a> {
    None,
    Malformed,
    Token(&'a str),
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::None;
    };
    let Ok(text) = value.to_str() else {
        return Bearer::Malformed;
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Bearer::Malformed
            } else {
                Bearer::Token(token)
            }
        }
        // Another scheme (Basic ...) is no bearer token at all.
        Some(_) => Bearer::None,
        None => Bearer::Malformed,
    }
}

async fn load_jwks(source: &str) -> Result<JwkSet, SetupError> {
    let failed = |detail: String| SetupError::Jwks {
        source_name: source.into(),
        detail,
    };
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let response = client
            .get(source)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| failed(e.to_string()))?;
        response.text().await.map_err(|e| failed(e.to_string()))?
    } else {
        std::fs::read_to_string(source).map_err(|e| failed(e.to_string()))?
    };
    serde_json::from_str(&text).map_err(|e| failed(format!("not a JWKS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::keys;
    use base64_url as b64;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    /// Tiny base64url (no padding) so the hand-made tokens need no extra crate.
    mod base64_url {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn encode(data: &[u8]) -> String {
            let mut out = String::new();
            for chunk in data.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..=chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }

    fn cfg() -> AuthConfig {
        AuthConfig::default()
    }

    fn hs256() -> Verifier {
        Verifier::new(&cfg(), Some(SECRET), None)
    }

    fn jwks() -> Verifier {
        let set: JwkSet = serde_json::from_str(&keys().jwks).unwrap();
        Verifier::new(&cfg(), None, Some(&set))
    }

    fn claims(role: Role) -> Claims {
        Claims::new(&cfg(), "OMS-Cust-001", role, Duration::from_secs(600))
    }

    fn signed(
        alg: Algorithm,
        kid: Option<&str>,
        claims: &impl Serialize,
        key: &EncodingKey,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn refused(result: Result<Caller, Refusal>, needle: &str) {
        let refusal = result.expect_err("the token must be refused");
        assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{refusal:?}");
        assert_eq!(refusal.error, Some("invalid_token"));
        assert!(
            refusal.detail.contains(needle),
            "{:?} lacks {needle:?}",
            refusal.detail
        );
    }

    #[test]
    fn a_minted_token_verifies_as_its_caller() {
        let token = mint(
            &cfg(),
            SECRET,
            "OMS-Cust-001",
            Role::Customer,
            Duration::from_secs(60),
        );
        assert_eq!(hs256().verify(&token), Ok(Caller::customer("OMS-Cust-001")));
        let token = ops_token();
        assert_eq!(hs256().verify(&token), Ok(Caller::operator("ops")));
    }

    #[test]
    fn expired_wrong_key_issuer_or_audience_are_refused() {
        let mut expired = claims(Role::Customer);
        expired.exp = expired.iat - LEEWAY_SECS - 10;
        refused(hs256().verify(&sign(&expired, SECRET)), "expired");
        // Within the leeway it still counts.
        let mut skewed = claims(Role::Customer);
        skewed.exp = skewed.iat - 5;
        assert!(hs256().verify(&sign(&skewed, SECRET)).is_ok());

        let other = b"another-secret-another-secret-another";
        refused(
            hs256().verify(&sign(&claims(Role::Customer), other)),
            "signature",
        );

        let mut wrong_iss = claims(Role::Customer);
        wrong_iss.iss = "someone-else".into();
        refused(hs256().verify(&sign(&wrong_iss, SECRET)), "issuer");

        let mut wrong_aud = claims(Role::Customer);
        wrong_aud.aud = "another-api".into();
        refused(hs256().verify(&sign(&wrong_aud, SECRET)), "audience");
    }

    #[test]
    fn exp_is_required_and_must_be_a_number() {
        let now = jsonwebtoken::get_current_timestamp();
        let key = EncodingKey::from_secret(SECRET);
        let base =
            serde_json::json!({"sub": "ops", "role": "operator", "iss": "oms", "aud": "oms"});
        refused(
            hs256().verify(&signed(Algorithm::HS256, None, &base, &key)),
            "exp",
        );
        // The type confusion of CVE-2026-25537: a string exp must not count as absent.
        let mut text_exp = base.clone();
        text_exp["exp"] = serde_json::json!("never");
        assert!(
            hs256()
                .verify(&signed(Algorithm::HS256, None, &text_exp, &key))
                .is_err()
        );
        let mut no_iss = base.clone();
        no_iss["exp"] = (now + 60).into();
        no_iss.as_object_mut().unwrap().remove("iss");
        refused(
            hs256().verify(&signed(Algorithm::HS256, None, &no_iss, &key)),
            "iss",
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64::encode(
            serde_json::to_string(&claims(Role::Operator))
                .unwrap()
                .as_bytes(),
        );
        refused(hs256().verify(&format!("{header}.{body}.")), "well-formed");
        refused(jwks().verify(&format!("{header}.{body}.")), "well-formed");
    }

    #[test]
    fn an_rs256_token_is_refused_by_an_hs256_edge() {
        let key = EncodingKey::from_rsa_pem(keys().rsa_private_pem.as_bytes()).unwrap();
        let token = signed(
            Algorithm::RS256,
            Some("rsa-1"),
            &claims(Role::Operator),
            &key,
        );
        refused(hs256().verify(&token), "RS256");
        // ... and accepted where the JWKS holds its key.
        assert_eq!(jwks().verify(&token), Ok(Caller::operator("OMS-Cust-001")));
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused_by_a_jwks_edge() {
        // The classic confusion: the RSA public key used as an HMAC secret.
        for secret in [keys().rsa_public_pem.as_bytes(), keys().jwks.as_bytes()] {
            let token = signed(
                Algorithm::HS256,
                Some("rsa-1"),
                &claims(Role::Operator),
                &EncodingKey::from_secret(secret),
            );
            refused(jwks().verify(&token), "HS256");
        }
        // A token naming RS256 but keyed by the EC key's id finds no key either.
        let key = EncodingKey::from_rsa_pem(keys().rsa_private_pem.as_bytes()).unwrap();
        let token = signed(
            Algorithm::RS256,
            Some("ec-1"),
            &claims(Role::Operator),
            &key,
        );
        refused(jwks().verify(&token), "RS256");
    }

    #[test]
    fn es256_tokens_verify_against_the_jwks() {
        let key = EncodingKey::from_ec_pem(keys().ec_private_pem.as_bytes()).unwrap();
        let token = signed(
            Algorithm::ES256,
            Some("ec-1"),
            &claims(Role::Customer),
            &key,
        );
        assert_eq!(jwks().verify(&token), Ok(Caller::customer("OMS-Cust-001")));
        // Without a kid every key of the algorithm is tried.
        let token = signed(Algorithm::ES256, None, &claims(Role::Customer), &key);
        assert!(jwks().verify(&token).is_ok());
        // An RS256 signature under a header that claims ES256 does not verify.
        let rsa = EncodingKey::from_rsa_pem(keys().rsa_private_pem.as_bytes()).unwrap();
        let forged = signed(Algorithm::RS256, None, &claims(Role::Customer), &rsa);
        let (_, rest) = forged.split_once('.').unwrap();
        let es_head = b64::encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        refused(jwks().verify(&format!("{es_head}.{rest}")), "");
    }

    #[test]
    fn keys_declaring_another_algorithm_or_symmetric_ones_are_not_used() {
        let set: JwkSet = serde_json::from_str(
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"},
                        {"kty":"RSA","alg":"RS512","n":"AQAB","e":"AQAB"}]}"#,
        )
        .unwrap();
        assert!(Verifier::new(&cfg(), None, Some(&set)).is_empty());
    }

    #[test]
    fn an_unknown_role_is_forbidden_and_a_bad_sub_invalid() {
        let key = EncodingKey::from_secret(SECRET);
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let admin = serde_json::json!({"sub": "root", "role": "admin", "iss": "oms", "aud": "oms", "exp": exp});
        let refusal = hs256()
            .verify(&signed(Algorithm::HS256, None, &admin, &key))
            .unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert_eq!(refusal.error, Some("insufficient_scope"));
        let bad_sub = serde_json::json!({"sub": "a b", "role": "customer", "iss": "oms", "aud": "oms", "exp": exp});
        refused(
            hs256().verify(&signed(Algorithm::HS256, None, &bad_sub, &key)),
            "sub",
        );
    }

    /// A valid operator token of `ops` for [`hs256`], for a minute.
    fn ops_token() -> String {
        mint(
            &cfg(),
            SECRET,
            "ops",
            Role::Operator,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn the_authorization_header_is_read_strictly() {
        let auth = Authenticator::new(hs256());
        let token = ops_token();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, http::HeaderValue::from_str(value).unwrap());
            auth.authenticate(&headers)
        };
        assert_eq!(
            with(&format!("Bearer {token}")),
            Authentication::Caller(Caller::operator("ops"))
        );
        assert_eq!(
            with(&format!("bearer {token}")),
            Authentication::Caller(Caller::operator("ops"))
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new()),
            Authentication::Refused(Refusal::missing())
        );
        assert_eq!(
            with("Basic b3BzOm9wcw=="),
            Authentication::Refused(Refusal::missing())
        );
        assert!(
            matches!(with("Bearer "), Authentication::Refused(r) if r.error == Some("invalid_token"))
        );
        assert!(
            matches!(with(&token), Authentication::Refused(r) if r.error == Some("invalid_token"))
        );
        assert!(
            matches!(with("Bearer not.a.jwt"), Authentication::Refused(r) if r.error == Some("invalid_token"))
        );
    }

    #[test]
    fn a_query_token_is_read_on_the_event_streams_only() {
        let auth = Authenticator::new(hs256());
        let token = ops_token();
        let ops = Authentication::Caller(Caller::operator("ops"));
        let get = |uri: &str, header: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = header {
                headers.insert(AUTHORIZATION, http::HeaderValue::from_str(value).unwrap());
            }
            auth.authenticate_request(&Method::GET, &uri.parse().unwrap(), &headers)
        };
        let invalid = |a: Authentication| matches!(a, Authentication::Refused(r) if r.error == Some("invalid_token"));
        let order = "0190a0b0-0000-7000-8000-000000000001";
        assert_eq!(get(&format!("/events?access_token={token}"), None), ops);
        assert_eq!(
            get(
                &format!("/orders/{order}/events?x=1&access_token={token}"),
                None
            ),
            ops
        );
        // Elsewhere the parameter means nothing: no token at all.
        for path in [
            "/orders",
            &format!("/orders/{order}"),
            "/stats",
            "/events/x",
        ] {
            assert_eq!(
                get(&format!("{path}?access_token={token}"), None),
                Authentication::Refused(Refusal::missing()),
                "{path}"
            );
        }
        let post = auth.authenticate_request(
            &Method::POST,
            &format!("/events?access_token={token}").parse().unwrap(),
            &HeaderMap::new(),
        );
        assert_eq!(post, Authentication::Refused(Refusal::missing()));
        // As strict as the header: the same verifier, one token per request.
        assert!(invalid(get("/events?access_token=not.a.jwt", None)));
        assert!(invalid(get("/events?access_token=", None)));
        assert!(invalid(get(
            &format!("/events?access_token={token}&access_token={token}"),
            None
        )));
        assert!(invalid(get(
            &format!("/events?access_token={}", token.replace('.', "%2E")),
            None
        )));
        assert!(invalid(get(
            &format!("/events?access_token={token}"),
            Some(&format!("Bearer {token}"))
        )));
        let expired = sign(
            &Claims {
                exp: 1,
                ..Claims::new(&cfg(), "ops", Role::Operator, Duration::ZERO)
            },
            SECRET,
        );
        assert!(invalid(get(
            &format!("/events?access_token={expired}"),
            None
        )));
        // The header alone still works there.
        assert_eq!(get("/events", Some(&format!("Bearer {token}"))), ops);
    }

    #[test]
    fn refusals_carry_their_challenge() {
        assert_eq!(Refusal::missing().challenge(), r#"Bearer realm="oms""#);
        assert_eq!(
            Refusal::invalid("the token has expired").challenge(),
            r#"Bearer realm="oms", error="invalid_token", error_description="the token has expired""#
        );
        assert_eq!(Refusal::forbidden("no").status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn auth_may_be_off_only_in_dev_on_loopback() {
        let at = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        assert!(may_disable("dev", at("127.0.0.1:8090")).is_ok());
        assert!(may_disable("dev", at("[::1]:8090")).is_ok());
        assert!(may_disable("dev", at("[::ffff:127.0.0.1]:8090")).is_ok());
        assert!(matches!(
            may_disable("default", at("127.0.0.1:8090")),
            Err(SetupError::DisabledOutsideDev(_))
        ));
        assert!(matches!(
            may_disable("docker", at("127.0.0.1:8090")),
            Err(SetupError::DisabledOutsideDev(_))
        ));
        assert!(matches!(
            may_disable("dev", at("0.0.0.0:8090")),
            Err(SetupError::DisabledNotLoopback(_))
        ));
        assert!(matches!(
            may_disable("dev", at("192.168.1.5:8090")),
            Err(SetupError::DisabledNotLoopback(_))
        ));
    }

    #[test]
    fn the_secret_comes_from_config_or_the_creds_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert_eq!(hs256_secret(&config).unwrap(), None);
        let creds = dir.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        let provisioned = "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c";
        std::fs::write(creds.join(SECRET_FILE), format!("{provisioned}\n")).unwrap();
        assert_eq!(
            hs256_secret(&config).unwrap().unwrap(),
            provisioned.as_bytes()
        );
        config.auth.hs256_secret = String::from_utf8(SECRET.to_vec()).unwrap();
        assert_eq!(hs256_secret(&config).unwrap().unwrap(), SECRET);
        config.auth.hs256_secret = "short".into();
        assert!(matches!(
            hs256_secret(&config),
            Err(SetupError::ShortSecret(5))
        ));
    }
}

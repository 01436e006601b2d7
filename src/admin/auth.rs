//! Who is asking: the [`Actor`] extractor every admin route takes, from an
//! API token (`Authorization: Bearer <token>`) or a console session cookie,
//! and the one error type the API and console answer refusals with.
//!
//! Owns authentication on the admin listener and the refusal shapes (401
//! without an account, 403 for a role that may not, 404 for another
//! partner's object, 403 for a missing CSRF token, 403 for a session
//! still on its one-time password outside its own session routes and the
//! console; the login attempt throttle and bound). It never decides a
//! role's rights itself (`model::account` does) and never logs a secret.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use super::EdgeState;
use crate::model::account::{Account, Role};

/// The console session cookie's name.
pub const SESSION_COOKIE: &str = "fedge_session";
/// The header a console script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A refusal or failure of an admin request: a status and a reason the
/// caller reads (JSON `{"error": reason}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
        }
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "this route needs an account: send Authorization: Bearer <token>, or log in to the console",
        )
    }
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
    }
    /// 503 for a login while the node is already checking as many
    /// passwords as it may at once (nothing was checked or counted).
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins are being checked at once: try again in 1 s",
        )
    }
    /// 429 for a throttled login: the reason ends with "try again in N s",
    /// which also becomes the Retry-After header.
    pub fn throttled(wait: std::time::Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed logins from this address or for this account: try again in {} s",
                wait.as_secs().max(1)
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.reason }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"fedge\""),
            );
        }
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) && let Some(secs) = self
            .reason
            .rsplit_once("try again in ")
            .and_then(|(_, t)| t.strip_suffix(" s"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        r
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        match &e {
            E::NotFound(_) => ApiError::not_found(e.to_string()),
            E::Conflict(_) | E::DomainTaken { .. } | E::Transition(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            E::Invalid(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            _ if e.is_unreachable() => {
                warn!(error = %e, "an admin request found the database unreachable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database is unreachable: {e}; no change was made"),
                )
            }
            _ => {
                warn!(error = %e, "store failure in an admin request");
                ApiError::internal("the database failed; see the edge's log")
            }
        }
    }
}

/// How the actor proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token: not sent by browsers on their own, so no CSRF check.
    Token,
    /// A console session; `csrf` is the token its forms must carry.
    Session { csrf: String },
    /// An API token taken from the outage memory while the database is
    /// unreachable (`store::OUTAGE_TOKEN_MEMORY`): reads only, every
    /// change is refused ([`Actor::require_change`], and the extractor for
    /// any method but GET and HEAD).
    Remembered,
}

/// Why a remembered token may not change anything (503).
pub const REMEMBERED_READ_ONLY: &str = "the database is unreachable: only read-only requests are served from the last verified tokens; no change was made";

/// The authenticated account behind a request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub account: Account,
    pub via: Via,
}

impl Actor {
    /// The name audit entries carry.
    pub fn name(&self) -> &str {
        &self.account.name
    }

    pub fn role(&self) -> Role {
        self.account.role
    }

    /// Refuses (403) an actor whose role may not change anything, and
    /// (503) one from the outage memory: every state-changing route calls
    /// this, including those that never touch the database (drain,
    /// reload).
    pub fn require_change(&self) -> Result<(), ApiError> {
        if !self.account.role.may_change() {
            Err(ApiError::forbidden(format!(
                "the {} role may not change anything; an operator may",
                self.account.role
            )))
        } else {
            self.require_verified()
        }
    }

    /// Refuses (503) an actor taken from the outage memory.
    pub fn require_verified(&self) -> Result<(), ApiError> {
        match self.via {
            Via::Remembered => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                REMEMBERED_READ_ONLY,
            )),
            Via::Token | Via::Session { .. } => Ok(()),
        }
    }

    /// Refuses (403) an actor scoped to one partner from node-wide objects.
    pub fn require_node_view(&self) -> Result<(), ApiError> {
        if self.account.role.sees_everything() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "a partner account sees its own partner only",
            ))
        }
    }

    /// Refuses (404, as if it did not exist) another partner's object.
    pub fn require_partner(&self, partner_id: &str) -> Result<(), ApiError> {
        if self.account.may_see_partner(partner_id) {
            Ok(())
        } else {
            Err(ApiError::not_found("no such partner"))
        }
    }

    /// Checks the CSRF token of a state-changing request made with a
    /// session cookie (`presented`: the form field or the header).
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), ApiError> {
        match &self.via {
            Via::Token | Via::Remembered => Ok(()),
            Via::Session { csrf } => {
                let ok = presented.is_some_and(|p| same_secret(p, csrf));
                if ok {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(
                        "missing or wrong CSRF token: reload the page and try again",
                    ))
                }
            }
        }
    }
}

/// Compares two secrets in time that depends on their length only.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn cookie_of(parts: &Parts) -> Option<String> {
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(&parts.headers);
    jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
}

/// The routes a session still on its one-time password may use: its own
/// session and password (`/api/v1/session...`), who am I, and the console
/// (whose pages send it to their own forced change).
fn open_before_change(path: &str) -> bool {
    path == "/api/v1/me"
        || path == "/api/v1/session"
        || path.starts_with("/api/v1/session/")
        || path == "/console"
        || path.starts_with("/console/")
}

impl FromRequestParts<Arc<EdgeState>> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(parts) {
            return match state.store.account_by_token_or_remembered(token).await? {
                Some(found) if found.remembered => {
                    // Whatever the route, a remembered token only reads.
                    if !matches!(parts.method, Method::GET | Method::HEAD) {
                        warn!(
                            account = %found.account.name,
                            method = %parts.method,
                            path = parts.uri.path(),
                            "a change refused: the token was taken from the outage memory"
                        );
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            REMEMBERED_READ_ONLY,
                        ));
                    }
                    Ok(Actor {
                        account: found.account,
                        via: Via::Remembered,
                    })
                }
                Some(found) => Ok(Actor {
                    account: found.account,
                    via: Via::Token,
                }),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the API token is unknown, revoked or expired, or its account is disabled",
                )),
            };
        }
        if let Some(cookie) = cookie_of(parts)
            && let Some(s) = state.store.session(&cookie).await?
        {
            if s.account.must_change_password && !open_before_change(parts.uri.path()) {
                return Err(ApiError::forbidden(
                    "change the one-time password first: POST /api/v1/session/password",
                ));
            }
            return Ok(Actor {
                account: s.account,
                via: Via::Session { csrf: s.csrf },
            });
        }
        Err(ApiError::unauthenticated())
    }
}

/// Checks a console login and opens a session. Returns the cookie value
/// (set it with [`session_cookie`]) and the session. A wrong name or
/// password, or an account that is not active, gets one answer (401).
/// `source` is the client's address: failures are counted per source and
/// per name ([`super::throttle`]); past the limit the answer is 429
/// without a password check.
pub async fn login(
    state: &EdgeState,
    name: &str,
    password: &str,
    source: std::net::IpAddr,
) -> Result<(String, crate::store::Session), ApiError> {
    let account = check_login(state, name, password, source).await?;
    let (cookie, session) = state.store.open_session(&account).await?;
    tracing::info!(account = %account.name, %source, "console login");
    Ok((cookie, session))
}

/// The password check of [`login`] (and of a password change), throttled:
/// the account, or 401 / 429 / 503. The attempt is counted before the
/// password is checked (refunded when right), so parallel attempts cannot
/// all pass the throttle; at most [`super::throttle::CONCURRENT_CHECKS`]
/// checks run at once, an attempt past that gets 503 without hashing (and
/// stays counted).
pub async fn check_login(
    state: &EdgeState,
    name: &str,
    password: &str,
    source: std::net::IpAddr,
) -> Result<Account, ApiError> {
    let throttle = super::throttle::logins();
    if let Err(wait) = throttle.begin(source, name) {
        return Err(ApiError::throttled(wait));
    }
    let Ok(_permit) = super::throttle::password_checks().try_acquire() else {
        // The attempt stays counted: a burst cannot retry its way past
        // the limit through this answer.
        throttle.failed(source, name);
        tracing::info!(account = %name, %source, "login refused: too many password checks at once");
        return Err(ApiError::busy());
    };
    let checked = state.store.check_password(name, password).await;
    match checked {
        Ok(Some(account)) => {
            throttle.succeeded(source, name);
            Ok(account)
        }
        Ok(None) => {
            throttle.failed(source, name);
            tracing::info!(account = %name, %source, "login refused: wrong name or password");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong account name or password",
            ))
        }
        Err(e) => {
            throttle.refund(source, name);
            Err(e.into())
        }
    }
}

/// The session cookie for `value`: HttpOnly, SameSite=Strict, Path=/,
/// Secure when the admin listener serves TLS; `None` clears it.
pub fn session_cookie(
    value: Option<String>,
    secure: bool,
) -> axum_extra::extract::cookie::Cookie<'static> {
    use axum_extra::extract::cookie::{Cookie, SameSite};
    let cleared = value.is_none();
    let mut c = Cookie::new(SESSION_COOKIE, value.unwrap_or_default());
    c.set_http_only(true);
    c.set_same_site(SameSite::Strict);
    c.set_path("/");
    c.set_secure(secure);
    if cleared {
        c.make_removal();
    }
    c
}

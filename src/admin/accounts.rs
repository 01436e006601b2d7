//! The accounts API on the admin listener: console sessions (`POST` and
//! `DELETE /api/v1/session`, `POST /api/v1/session/password`), who am I
//! (`GET /api/v1/me`), and the operators' account verbs (`/api/v1/accounts`:
//! list, add, disable, enable, reset, activate, tokens).
//!
//! Owns these routes and their JSON shapes (annotated for the OpenAPI
//! document: [`AccountsApi`]). It never stores or compares a secret
//! itself (the store does), never logs one, and returns a new secret only
//! in the answer of the request that created it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::EdgeState;
use super::auth::{self, Actor, ApiError, Via};
use crate::model::account::{Account, AccountState, Role};

/// The accounts API's routes (merged into the admin listener's router).
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/session", post(login).delete(logout))
        .route("/api/v1/session/password", post(change_password))
        .route("/api/v1/me", get(me))
        .route("/api/v1/accounts", get(list).post(add))
        .route("/api/v1/accounts/{name}/disable", post(disable))
        .route("/api/v1/accounts/{name}/enable", post(enable))
        .route("/api/v1/accounts/{name}/reset", post(reset))
        .route("/api/v1/accounts/{name}/activate", post(activate))
        .route("/api/v1/accounts/{name}/tokens", post(new_token))
}

/// The accounts API's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(login, logout, change_password, me, list, add, disable, enable, reset, activate, new_token),
    components(schemas(
        LoginRequest, LoginAnswer, PasswordChange, AccountView, MeView, NewAccount,
        IssuedCredentials, StateChange, NewToken, IssuedToken, ErrorBody
    )),
    tags((name = "accounts", description = "Accounts, roles, API tokens and console sessions"))
)]
pub struct AccountsApi;

/// A refusal: `{"error": reason}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// An account, without secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub name: String,
    /// `operator`, `viewer` or `partner`.
    pub role: String,
    /// The partner a `partner` account is scoped to.
    pub partner_id: Option<String>,
    /// `requested`, `active` or `disabled`.
    pub state: String,
    pub must_change_password: bool,
    pub created_at: String,
    pub created_by: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            name: a.name.clone(),
            role: a.role.as_str().to_string(),
            partner_id: a.partner_id.clone(),
            state: a.state.as_str().to_string(),
            must_change_password: a.must_change_password,
            created_at: a.created_at.clone(),
            created_by: a.created_by.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

/// A new console session: the cookie is in `Set-Cookie`; `csrf` goes in
/// the `X-CSRF-Token` header of every state-changing request.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    pub account: AccountView,
    pub csrf: String,
    /// The one-time password must be replaced (`POST /api/v1/session/password`).
    pub must_change_password: bool,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub old: String,
    pub new: String,
}

/// Who is asking, and how.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub account: AccountView,
    /// `token`, `session`, or (while the database is unreachable, from
    /// the outage memory: reads only) `remembered token (...)`.
    pub via: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAccount {
    pub name: String,
    /// `operator`, `viewer` or `partner`.
    pub role: String,
    /// Required for, and only for, the `partner` role.
    pub partner_id: Option<String>,
}

/// Secrets shown once: the API token and the one-time console password.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCredentials {
    pub account: AccountView,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The console password, to be changed at first login.
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StateChange {
    /// Why (required to disable).
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NewToken {
    pub label: Option<String>,
    /// Lifetime in days; without it the token lives until revoked.
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub account: String,
    pub label: String,
    /// Shown once: send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_in_days: Option<u32>,
}

fn csrf_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(auth::CSRF_HEADER).and_then(|v| v.to_str().ok())
}

/// An operator's state-changing request: the role, and CSRF for sessions.
fn operator_change(actor: &Actor, headers: &HeaderMap) -> Result<(), ApiError> {
    actor.require_change()?;
    actor.check_csrf(csrf_of(headers))
}

/// An optional JSON body (empty: the defaults). The body is read as text
/// (any Content-Type), so that a refusal for the role comes before one
/// for the body.
fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &str) -> Result<T, ApiError> {
    if body.trim().is_empty() {
        return Ok(T::default());
    }
    parse_required(body)
}

/// A required JSON body.
fn parse_required<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError::bad_request(format!("the JSON body: {e}")))
}

/// Refuses (415) a body not declared `application/json`: a cross-site
/// form can send `text/plain` without a preflight, `application/json` not
/// (a login CSRF into the attacker's account).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the login as JSON, with Content-Type: application/json",
        )),
    }
}

/// Opens a console session.
#[utoipa::path(post, path = "/api/v1/session", tag = "accounts", request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in; the session cookie is set", body = LoginAnswer),
        (status = 401, description = "wrong name or password", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 429, description = "too many failed logins (Retry-After)", body = ErrorBody),
        (status = 503, description = "too many logins being checked at once (Retry-After)", body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: String,
) -> Result<(CookieJar, Json<LoginAnswer>), ApiError> {
    require_json(&headers)?;
    let req: LoginRequest = parse_required(&body)?;
    let (cookie, session) = auth::login(&state, &req.name, &req.password, peer.ip()).await?;
    let jar = jar.add(auth::session_cookie(Some(cookie), state.admin_tls));
    Ok((
        jar,
        Json(LoginAnswer {
            account: AccountView::from(&session.account),
            csrf: session.csrf,
            must_change_password: session.account.must_change_password,
            expires_at: session.expires_at,
        }),
    ))
}

/// Ends the console session of the cookie sent, if any.
#[utoipa::path(delete, path = "/api/v1/session", tag = "accounts",
    responses((status = 204, description = "logged out; the cookie is cleared")))]
pub async fn logout(
    State(state): State<Arc<EdgeState>>,
    jar: CookieJar,
) -> Result<(StatusCode, CookieJar), ApiError> {
    if let Some(c) = jar.get(auth::SESSION_COOKIE) {
        state.store.close_session(c.value()).await?;
    }
    let jar = jar.add(auth::session_cookie(None, state.admin_tls));
    Ok((StatusCode::NO_CONTENT, jar))
}

/// Changes the caller's own password (the old one is checked, throttled
/// like a login). The account's other console sessions end (the caller's
/// own, if it is one, stays).
#[utoipa::path(post, path = "/api/v1/session/password", tag = "accounts", request_body = PasswordChange,
    responses(
        (status = 204, description = "changed"),
        (status = 401, description = "the old password is wrong", body = ErrorBody),
        (status = 403, description = "missing CSRF token", body = ErrorBody),
        (status = 422, description = "the new password is refused", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    actor: Actor,
    jar: CookieJar,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, ApiError> {
    actor.check_csrf(csrf_of(&headers))?;
    let req: PasswordChange = parse_required(&body)?;
    auth::check_login(&state, actor.name(), &req.old, peer.ip()).await?;
    let own = match actor.via {
        Via::Session { .. } => jar.get(auth::SESSION_COOKIE).map(|c| c.value().to_string()),
        Via::Token | Via::Remembered => None,
    };
    state
        .store
        .set_password_keeping(actor.name(), &req.new, actor.name(), own.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me(actor: Actor) -> Json<MeView> {
    Json(MeView {
        account: AccountView::from(&actor.account),
        via: match actor.via {
            Via::Token => "token".into(),
            Via::Remembered => "remembered token (the database is unreachable)".into(),
            Via::Session { .. } => "session".into(),
        },
    })
}

/// Every account (operators only).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, body = [AccountView]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    actor.require_change()?;
    let all = state.store.accounts().await?;
    Ok(Json(all.iter().map(AccountView::from).collect()))
}

/// Adds an active account; its token and one-time password are returned once.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = NewAccount,
    responses(
        (status = 201, body = IssuedCredentials),
        (status = 403, body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn add(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    body: String,
) -> Result<(StatusCode, Json<IssuedCredentials>), ApiError> {
    operator_change(&actor, &headers)?;
    let req: NewAccount = parse_required(&body)?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: crate::model::account::UnknownRole| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        })?;
    let c = state
        .store
        .add_account(&req.name, role, req.partner_id.as_deref(), actor.name())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredentials {
            account: AccountView::from(&c.account),
            token: c.token,
            password: c.password,
        }),
    ))
}

async fn set_state(
    state: &EdgeState,
    actor: &Actor,
    name: &str,
    to: AccountState,
    reason: Option<&str>,
) -> Result<Json<AccountView>, ApiError> {
    if state.store.account(name).await?.is_none() {
        return Err(ApiError::not_found(format!("no account named {name}")));
    }
    let a = state
        .store
        .set_account_state(name, to, actor.name(), reason)
        .await?;
    Ok(Json(AccountView::from(&a)))
}

/// Disables an account: its tokens and sessions stop working at once.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/disable", tag = "accounts",
    params(("name" = String, Path, description = "account name")), request_body = StateChange,
    responses((status = 200, body = AccountView), (status = 400, description = "no reason", body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<AccountView>, ApiError> {
    operator_change(&actor, &headers)?;
    let req: StateChange = parse_body(&body)?;
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("say why: {\"reason\": \"...\"}"))?;
    if name == actor.name() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an operator cannot disable their own account",
        ));
    }
    set_state(&state, &actor, &name, AccountState::Disabled, Some(&reason)).await
}

/// Enables a disabled account again (its earlier tokens work again).
#[utoipa::path(post, path = "/api/v1/accounts/{name}/enable", tag = "accounts",
    params(("name" = String, Path, description = "account name")), request_body = StateChange,
    responses((status = 200, body = AccountView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a requested account is activated, not enabled", body = ErrorBody)))]
pub async fn enable(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<AccountView>, ApiError> {
    operator_change(&actor, &headers)?;
    let req: StateChange = parse_body(&body)?;
    if let Some(a) = state.store.account(&name).await?
        && a.state == AccountState::Requested
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is a requested account: activate it (POST .../activate)"),
        ));
    }
    set_state(
        &state,
        &actor,
        &name,
        AccountState::Active,
        req.reason.as_deref(),
    )
    .await
}

/// New one-time password and token for an account (earlier ones stop
/// working). A disabled account is refused (409): enable it first.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/reset", tag = "accounts",
    params(("name" = String, Path, description = "account name")),
    responses((status = 200, body = IssuedCredentials), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the account is disabled: enable it first", body = ErrorBody)))]
pub async fn reset(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<IssuedCredentials>, ApiError> {
    operator_change(&actor, &headers)?;
    credentials(&state, &actor, &name, "reset", None).await
}

/// Activates an account requested by an FPA submission; its one-time
/// credentials are returned once.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/activate", tag = "accounts",
    params(("name" = String, Path, description = "account name")),
    responses((status = 200, body = IssuedCredentials), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not a requested account", body = ErrorBody)))]
pub async fn activate(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<IssuedCredentials>, ApiError> {
    operator_change(&actor, &headers)?;
    credentials(
        &state,
        &actor,
        &name,
        "activate",
        Some(AccountState::Requested),
    )
    .await
}

async fn credentials(
    state: &EdgeState,
    actor: &Actor,
    name: &str,
    action: &str,
    must_be: Option<AccountState>,
) -> Result<Json<IssuedCredentials>, ApiError> {
    let Some(a) = state.store.account(name).await? else {
        return Err(ApiError::not_found(format!("no account named {name}")));
    };
    if let Some(want) = must_be
        && a.state != want
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is {}, not {want}", a.state),
        ));
    }
    let c = state
        .store
        .issue_credentials(name, actor.name(), action)
        .await?;
    Ok(Json(IssuedCredentials {
        account: AccountView::from(&c.account),
        token: c.token,
        password: c.password,
    }))
}

/// An extra API token for an account.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/tokens", tag = "accounts",
    params(("name" = String, Path, description = "account name")), request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn new_token(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    operator_change(&actor, &headers)?;
    let req: NewToken = parse_body(&body)?;
    if state.store.account(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no account named {name}")));
    }
    let label = req.label.unwrap_or_else(|| "api".to_string());
    let lifetime = req
        .expires_in_days
        .map(|d| time::Duration::days(i64::from(d)));
    let token = state
        .store
        .issue_token(&name, &label, lifetime, actor.name())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            account: name,
            label,
            token,
            expires_in_days: req.expires_in_days,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    #[test]
    fn the_openapi_part_lists_every_route() {
        let doc = super::AccountsApi::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for p in [
            "/api/v1/session",
            "/api/v1/session/password",
            "/api/v1/me",
            "/api/v1/accounts",
            "/api/v1/accounts/{name}/disable",
            "/api/v1/accounts/{name}/enable",
            "/api/v1/accounts/{name}/reset",
            "/api/v1/accounts/{name}/activate",
            "/api/v1/accounts/{name}/tokens",
        ] {
            assert!(
                paths.iter().any(|k| k.as_str() == p),
                "{p} missing: {paths:?}"
            );
        }
        let schemas = doc.components.map(|c| c.schemas).unwrap_or_default();
        assert!(schemas.contains_key("IssuedCredentials"));
        assert!(schemas.contains_key("LoginAnswer"));
    }
}

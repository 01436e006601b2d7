//! The web console: server-rendered HTML pages (askama templates under
//! `templates/`) on the admin listener, under `/console/`, for operators,
//! viewers and partner accounts, plus the `GET /` redirect for browsers.
//!
//! Owns page layout, the console login and session cookie handling, the
//! CSRF hidden field of every form and POST-redirect-GET. It never decides
//! a role's rights itself (the `Actor` checks and `model::account` do),
//! never shows a secret twice, and never writes to the store except
//! through the store's audited methods.

mod cvi;
mod login;
mod node;
mod partners;
mod view;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::EdgeState;
use super::auth::{Actor, ApiError, Via};
use crate::model::account::Role;

/// The stylesheet, served at `/console/console.css` (no CDN, no build step).
const CSS: &str = include_str!("console.css");
/// The one script (the meeting page's copy button), at `/console/console.js`.
const JS: &str = include_str!("console.js");
/// What a console page may load: its own stylesheet and script, nothing
/// inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The cookie that carries a one-line note from a POST to the page it
/// redirects to (POST-redirect-GET).
const FLASH_COOKIE: &str = "fedge_flash";

/// The console's routes (merged into the admin router).
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route(
            "/console/password",
            get(login::password_form).post(login::password_submit),
        )
        .route("/console/partners", get(partners::list))
        .route("/console/partners/{id}", get(partners::show))
        .route("/console/partners/{id}/verb", post(partners::verb))
        .route(
            "/console/partners/{id}/test",
            post(partners::test_federation),
        )
        .route("/console/accounts/activate", post(partners::activate))
        .route("/console/cvi", get(cvi::show))
        .route("/console/cvi/enrol", post(cvi::enrol))
        .route("/console/cvi/withdraw", post(cvi::withdraw))
        .route("/console/cvi/meetings", post(cvi::create_meeting))
        .route("/console/cvi/meetings/{id}", get(cvi::meeting))
        .route("/console/node", get(node::status))
        .route("/console/node/drain", post(node::drain))
}

/// `GET /` for a browser (it accepts `text/html`): the console.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

/// `/console/`: operators and viewers land on the partners list, a
/// partner account on its own partner's page.
async fn home(who: Who) -> Response {
    let a = &who.actor.account;
    match (a.role, &a.partner_id) {
        (Role::Partner, Some(p)) => Redirect::to(&format!("/console/partners/{p}")).into_response(),
        (Role::Partner, None) => page_error(
            &who,
            ApiError::forbidden("this partner account is not tied to a partner"),
        ),
        _ => Redirect::to("/console/partners").into_response(),
    }
}

/// A console request's actor. Without a session the browser goes to the
/// login page; with a one-time password still set, to the change page.
pub struct Who {
    pub actor: Actor,
    /// The CSRF token the page's forms carry.
    pub csrf: String,
    /// The note a POST left for this page (shown once).
    pub flash: Option<String>,
}

impl FromRequestParts<Arc<EdgeState>> for Who {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        let actor = match Actor::from_request_parts(parts, state).await {
            Ok(a) => a,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                return Err(Redirect::to("/console/login").into_response());
            }
            Err(e) => return Err(bare_error(e)),
        };
        let csrf = match &actor.via {
            Via::Session { csrf } => csrf.clone(),
            Via::Token | Via::Remembered => String::new(),
        };
        let free = ["/console/password", "/console/logout"];
        if actor.account.must_change_password && !free.contains(&parts.uri.path()) {
            return Err(Redirect::to("/console/password").into_response());
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let flash = jar
            .get(FLASH_COOKIE)
            .and_then(|c| B64.decode(c.value()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|v| !v.is_empty());
        Ok(Who { actor, csrf, flash })
    }
}

/// What every page's frame shows: who is logged in, the role, the
/// navigation the role may use, the CSRF token for the logout form.
pub struct Chrome {
    pub title: String,
    pub who: String,
    pub role: String,
    pub csrf: String,
    pub sees_everything: bool,
    pub flash: Option<String>,
    /// The partner a partner account is scoped to.
    pub own_partner: Option<String>,
}

impl Chrome {
    pub fn new(who: &Who, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            who: who.actor.account.name.clone(),
            role: who.actor.account.role.to_string(),
            csrf: who.csrf.clone(),
            sees_everything: who.actor.account.role.sees_everything(),
            flash: who.flash.clone(),
            own_partner: who.actor.account.partner_id.clone(),
        }
    }

    /// The frame of a page shown before login.
    pub fn anonymous(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            who: String::new(),
            role: String::new(),
            csrf: String::new(),
            sees_everything: false,
            flash: None,
            own_partner: None,
        }
    }
}

/// Renders a page; a flash note shown on it is cleared.
pub fn render(t: &impl Template, status: StatusCode, clear_flash: bool) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, html_headers(), html).into_response();
            if clear_flash {
                let c = flash_cookie(None);
                if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn html_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ]
}

/// A page for a page's own kind of page.
pub fn page<T: Template>(who: &Who, t: &T) -> Response {
    render(t, StatusCode::OK, who.flash.is_some())
}

/// The flash cookie carrying `note` (`None` clears it).
fn flash_cookie(note: Option<&str>) -> Cookie<'static> {
    let mut c = Cookie::new(FLASH_COOKIE, note.unwrap_or_default().to_string());
    c.set_http_only(true);
    c.set_same_site(SameSite::Strict);
    c.set_path("/console");
    if note.is_none() {
        c.make_removal();
    }
    c
}

/// POST-redirect-GET: back to `to`, with `note` shown once there.
pub fn done(to: &str, note: &str) -> Response {
    // Cookie values may not hold every character: base64url.
    let short: String = note.chars().take(600).collect();
    let jar = CookieJar::new().add(flash_cookie(Some(&B64.encode(short))));
    (jar, Redirect::to(to)).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    status: u16,
    reason: String,
}

/// A refusal or failure as a page in the console's frame.
pub fn page_error(who: &Who, e: ApiError) -> Response {
    let t = ErrorPage {
        c: Chrome::new(who, "Refused"),
        status: e.status.as_u16(),
        reason: e.reason,
    };
    render(&t, e.status, false)
}

/// A refusal before the actor is known (no frame).
fn bare_error(e: ApiError) -> Response {
    let t = ErrorPage {
        c: Chrome::anonymous("Refused"),
        status: e.status.as_u16(),
        reason: e.reason,
    };
    render(&t, e.status, false)
}

/// Checks the form's CSRF field against the session's.
pub fn csrf_ok(who: &Who, field: &str) -> Result<(), ApiError> {
    who.actor.check_csrf(Some(field))
}

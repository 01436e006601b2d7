//! The console's login, logout and password change pages.
//!
//! Owns the session cookie's life in the browser: set at login (through
//! `auth::login`, which checks and throttles), cleared at logout, and the
//! forced change of a one-time password. It never logs or echoes a
//! password, and never opens a session itself.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::{Chrome, Who, csrf_ok, done, page, page_error, render};
use crate::admin::EdgeState;
use crate::admin::auth::{Actor, ApiError, SESSION_COOKIE, check_login, login, session_cookie};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    name: String,
    error: Option<String>,
}

/// `GET /console/login` (a browser already logged in goes to the console).
pub(super) async fn form(actor: Result<Actor, ApiError>) -> Response {
    if actor.is_ok() {
        return Redirect::to("/console/").into_response();
    }
    let t = LoginPage {
        c: Chrome::anonymous("Log in"),
        name: String::new(),
        error: None,
    };
    render(&t, StatusCode::OK, false)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    name: String,
    password: String,
}

/// `POST /console/login`: a session cookie and the console, or the form
/// again with the reason in words.
pub(super) async fn submit(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    match login(&state, f.name.trim(), &f.password, peer.ip()).await {
        Ok((cookie, session)) => {
            let jar = CookieJar::new().add(session_cookie(Some(cookie), state.admin_tls));
            let to = if session.account.must_change_password {
                "/console/password"
            } else {
                "/console/"
            };
            (jar, Redirect::to(to)).into_response()
        }
        Err(e) => {
            let t = LoginPage {
                c: Chrome::anonymous("Log in"),
                name: f.name,
                error: Some(e.reason),
            };
            render(&t, e.status, false)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout`: closes the session and clears the cookie.
pub(super) async fn logout(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    jar: CookieJar,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(e) = csrf_ok(&who, &f.csrf) {
        return page_error(&who, e);
    }
    if let Some(c) = jar.get(SESSION_COOKIE)
        && let Err(e) = state.store.close_session(c.value()).await
    {
        return page_error(&who, e.into());
    }
    let jar = CookieJar::new().add(session_cookie(None, state.admin_tls));
    (jar, Redirect::to("/console/login")).into_response()
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    c: Chrome,
    forced: bool,
    error: Option<String>,
}

/// `GET /console/password`: change the password (forced after a
/// one-time password).
pub(super) async fn password_form(who: Who) -> Response {
    let t = PasswordPage {
        c: Chrome::new(&who, "Change your password"),
        forced: who.actor.account.must_change_password,
        error: None,
    };
    page(&who, &t)
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
    again: String,
}

/// `POST /console/password`.
pub(super) async fn password_submit(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    who: Who,
    jar: CookieJar,
    Form(f): Form<PasswordForm>,
) -> Response {
    if let Err(e) = csrf_ok(&who, &f.csrf) {
        return page_error(&who, e);
    }
    let again = |error: String, status: StatusCode| {
        let t = PasswordPage {
            c: Chrome::new(&who, "Change your password"),
            forced: who.actor.account.must_change_password,
            error: Some(error),
        };
        render(&t, status, false)
    };
    let name = who.actor.account.name.clone();
    // Checked (and throttled) like a login.
    match check_login(&state, &name, &f.current, peer.ip()).await {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return again(
                "the current password is wrong".into(),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
        Err(e) => return again(e.reason, e.status),
    }
    if f.new != f.again {
        return again(
            "the two new passwords differ".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if f.new == f.current {
        return again(
            "the new password must differ from the current one".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    // The account's other sessions end; this one stays.
    let own = jar.get(SESSION_COOKIE).map(|c| c.value().to_string());
    match state
        .store
        .set_password_keeping(&name, &f.new, &name, own.as_deref())
        .await
    {
        Ok(()) => done("/console/", "Your password was changed."),
        Err(e) => {
            let e: crate::admin::auth::ApiError = e.into();
            again(e.reason, e.status)
        }
    }
}

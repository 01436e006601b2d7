//! The console's CVI pages: the organisers (enrolled and withdrawn), their
//! enrolment one by one or from pasted CSV (every bad row named with its
//! line), withdrawal, and meetings (create one; its page shows the invite
//! text read-only with a copy button).
//!
//! Owns these pages and forms. Every rule and change is
//! `admin::service`'s (the same as the API's); it never writes the store.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, Who, csrf_ok, done, page, page_error, render};
use crate::admin::EdgeState;
use crate::admin::service::{
    self, EnrolOutcome, EnrolRequest, MeetingRequest, MeetingView, OrganiserView,
};

#[derive(Template)]
#[template(path = "cvi.html")]
struct CviPage {
    c: Chrome,
    may_change: bool,
    organisers: Vec<OrganiserView>,
    outcome: Option<EnrolOutcome>,
    error: Option<String>,
    /// The enrolment form as sent, to correct and send again.
    form: EnrolForm,
}

/// The enrolment form. `emails`: one address a line; `csv`: the text of
/// a file with a column headed `EmailAddress`.
#[derive(Deserialize, Default, Clone)]
pub(super) struct EnrolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    ods: String,
    teams_enabled: Option<String>,
    #[serde(default)]
    emails: String,
    #[serde(default)]
    csv: String,
    partial: Option<String>,
}

async fn cvi_page(
    state: &EdgeState,
    who: &Who,
    outcome: Option<EnrolOutcome>,
    error: Option<String>,
    form: EnrolForm,
    status: StatusCode,
) -> Response {
    let organisers = match service::organisers(state, &who.actor).await {
        Ok(o) => o,
        Err(e) => return page_error(who, e),
    };
    let t = CviPage {
        c: Chrome::new(who, "CVI organisers and meetings"),
        may_change: who.actor.account.role.may_change(),
        organisers,
        outcome,
        error,
        form: EnrolForm {
            csrf: String::new(),
            ..form
        },
    };
    render(&t, status, who.flash.is_some())
}

/// `GET /console/cvi`.
pub(super) async fn show(State(state): State<Arc<EdgeState>>, who: Who) -> Response {
    cvi_page(
        &state,
        &who,
        None,
        None,
        EnrolForm::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /console/cvi/enrol`: all rows or none (unless "enrol the good
/// rows" is ticked); the page lists every bad row with its line.
pub(super) async fn enrol(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<EnrolForm>,
) -> Response {
    if let Err(e) = csrf_ok(&who, &f.csrf) {
        return page_error(&who, e);
    }
    let csv = f.csv.trim();
    let req = EnrolRequest {
        org: f.org.clone(),
        ods: f.ods.clone(),
        teams_enabled: f.teams_enabled.is_some(),
        emails: f
            .emails
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        csv: (!csv.is_empty()).then(|| csv.to_string()),
        partial: f.partial.is_some(),
    };
    match service::enrol(&state, &who.actor, &req).await {
        Ok(o) if o.written && o.errors.is_empty() => done(
            "/console/cvi",
            &format!("Enrolled {}: {}", o.enrolled.len(), o.enrolled.join(", ")),
        ),
        Ok(o) => {
            let status = if o.written {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            cvi_page(&state, &who, Some(o), None, f, status).await
        }
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            cvi_page(&state, &who, None, Some(e.reason), f, e.status).await
        }
        Err(e) => page_error(&who, e),
    }
}

#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    email: String,
}

/// `POST /console/cvi/withdraw`.
pub(super) async fn withdraw(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<WithdrawForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        service::withdraw(&state, &who.actor, &f.email).await
    }
    .await;
    match r {
        Ok(o) => done(
            "/console/cvi",
            &format!(
                "{} withdrawn: their meetings can no longer be joined",
                o.email
            ),
        ),
        Err(e) => page_error(&who, e),
    }
}

#[derive(Deserialize)]
pub(super) struct MeetingForm {
    #[serde(default)]
    csrf: String,
    organiser: String,
    #[serde(default)]
    subject: String,
    public_subject: Option<String>,
    #[serde(default)]
    expires: String,
}

/// `POST /console/cvi/meetings`: a new conference ID, then its page.
pub(super) async fn create_meeting(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<MeetingForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        let req = MeetingRequest {
            organiser: f.organiser.trim().to_string(),
            subject: Some(f.subject.trim().to_string()).filter(|s| !s.is_empty()),
            public_subject: f.public_subject.is_some(),
            expires: Some(f.expires.trim().to_string()).filter(|s| !s.is_empty()),
        };
        service::create_meeting(&state, &who.actor, &req).await
    }
    .await;
    match r {
        Ok(m) => done(
            &format!("/console/cvi/meetings/{}", m.conference_id),
            "Meeting created: copy the invite text into the invitation.",
        ),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            done("/console/cvi", &format!("No meeting created: {}", e.reason))
        }
        Err(e) => page_error(&who, e),
    }
}

#[derive(Template)]
#[template(path = "meeting.html")]
struct MeetingPage {
    c: Chrome,
    m: MeetingView,
}

/// `GET /console/cvi/meetings/{id}`.
pub(super) async fn meeting(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
) -> Response {
    match service::meeting(&state, &who.actor, &id).await {
        Ok(m) => {
            let t = MeetingPage {
                c: Chrome::new(&who, format!("Meeting {}", m.conference_id)),
                m,
            };
            page(&who, &t)
        }
        Err(e) => page_error(&who, e),
    }
}

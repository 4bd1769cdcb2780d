//! The idempotent write protocol around every POST, PATCH and DELETE handler (CONTRACT §1):
//! claim the key, run the work (whose transaction stores the reply), replay or release.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use strata_core::error::CoreError;
use strata_core::idempotency::{IdemClaim, Reply, fingerprint};
use strata_core::service::Claimed;

use crate::AppState;
use crate::error::{HttpError, HttpResult, envelope};
use crate::extract::{Auth, IdemKey};

/// Everything a write handler needs: the caller, the Idempotency-Key and the identity of the
/// request (method, path, raw body). Takes the body, so it is a handler's last extractor.
pub struct Write {
    pub caller: Auth,
    pub idem: IdemKey,
    pub method: String,
    pub path: String,
    pub body: Bytes,
}

impl FromRequest<AppState> for Write {
    type Rejection = HttpError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, HttpError> {
        let (mut parts, body) = req.into_parts();
        let caller = Auth::from_request_parts(&mut parts, app).await?;
        let idem = IdemKey::from_request_parts(&mut parts, app).await?;
        let (method, path) = (parts.method.to_string(), parts.uri.path().to_owned());
        let body = Bytes::from_request(Request::from_parts(parts, body), app).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                CoreError::PayloadTooLarge
            } else {
                CoreError::Validation { field: None, message: "The request body could not be read.".into(), code: None, bounds: None }
            }
        })?;
        Ok(Self { caller, idem, method, path, body })
    }
}

/// `body` as a JSON response with `status`.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResult {
    let reply = Reply::json(status.as_u16(), body)?;
    Ok(reply_response(reply))
}

/// A stored reply (or an error envelope waiting to be stored) as a response.
pub fn reply_response(reply: Reply) -> Response {
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl Write {
    /// Runs `work` under the request's Idempotency-Key, if it has one, and answers its result
    /// with `status`. `work` gets the claim (which carries `status`) to hand to the service,
    /// whose transaction stores the answer with it.
    pub async fn run<T, F, Fut>(&self, app: &AppState, status: StatusCode, work: F) -> HttpResult
    where
        T: Serialize,
        F: FnOnce(Option<IdemClaim>) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        self.run_inner(app, status, false, work).await
    }

    /// For routes that require an Idempotency-Key (credit allocation): none is 400, and a replay
    /// says so in its body (`"replayed": true`) as well as in the header.
    pub async fn run_keyed<T, F, Fut>(&self, app: &AppState, status: StatusCode, work: F) -> HttpResult
    where
        T: Serialize,
        F: FnOnce(Option<IdemClaim>) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        if self.idem.0.is_none() {
            return Err(HttpError(CoreError::IdempotencyRequired));
        }
        self.run_inner(app, status, true, work).await
    }

    async fn run_inner<T, F, Fut>(&self, app: &AppState, status: StatusCode, mark_replayed: bool, work: F) -> HttpResult
    where
        T: Serialize,
        F: FnOnce(Option<IdemClaim>) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        let Some(key) = self.idem.0.clone() else {
            let answer = work(None).await?;
            return json_response(status, &answer);
        };
        let caller = &self.caller;
        let fp = fingerprint(&self.method, &self.path, &caller.org_id().to_string(), &self.body);
        let claim = match app.strata.idem_claim(caller, key, fp).await? {
            Claimed::Replay(reply) => {
                let reply = if mark_replayed { mark_as_replayed(reply) } else { reply };
                let mut resp = reply_response(reply);
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(resp);
            }
            Claimed::Proceed(claim) => claim.answering(status.as_u16()),
        };
        match work(Some(claim.clone())).await {
            Ok(answer) => json_response(status, &answer),
            Err(err) => {
                let stored = Reply { status: err.status(), body: envelope(&err, caller.request_id) };
                if let Err(e) = app.strata.idem_fail(&claim, &err, stored.clone()).await {
                    tracing::error!(error = %e, "could not settle an idempotency claim");
                }
                if err.is_replayable() {
                    // Answer with exactly what a retry will be replayed.
                    return Ok(reply_response(stored));
                }
                Err(HttpError(err))
            }
        }
    }
}

/// Sets `"replayed": true` in a stored success body that has the field.
fn mark_as_replayed(reply: Reply) -> Reply {
    match serde_json::from_slice::<serde_json::Value>(&reply.body) {
        Ok(serde_json::Value::Object(mut m)) if m.contains_key("replayed") => {
            m.insert("replayed".into(), serde_json::Value::Bool(true));
            Reply { status: reply.status, body: serde_json::to_vec(&m).unwrap_or(reply.body) }
        }
        _ => reply,
    }
}

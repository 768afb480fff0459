//! The HTTP face of the gateway, compatible with the OpenAI Videos API so the official SDKs work unmodified:
//! `POST /v1/videos` (JSON or multipart form; `input_reference` for image→video), `POST /v1/videos/edits`,
//! `POST /v1/videos/extensions`, `POST /v1/videos/{id}/remix`, `GET /v1/videos/{id}`, `GET /v1/videos` (after/limit/order),
//! `DELETE /v1/videos/{id}` (cancels running work, then deletes), `GET /v1/videos/{id}/content?variant=…`, and two
//! extensions: `GET /v1/videos/{id}/events` (server-sent events; resumes after the `Last-Event-ID` sequence) and
//! `GET /v1/models`. Errors use OpenAI's body (`{"error": {"message", "type", "code", "param"}}`) on every 4xx and
//! 5xx the router answers, unknown routes and methods included ([`edge`]); 429s carry `Retry-After`. Served by
//! [`serve`], with header and body read timeouts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt as _};
use serde_json::{Value, json};
use vidmesh_proto::gateway::v1::conditioning::Reference;
use vidmesh_proto::gateway::v1::{
    Conditioning, ConditioningMode, GenerateRequest, Job, JobEvent, JobState, job_event::Event,
};

mod edge;
mod fields;
mod serve;

pub use serve::serve;

use fields::{COMMON, Fields, bad, generate_request, number, reference, text};

use crate::admission::Tenant;
use crate::api::{Api, Variant};
use crate::config::HttpConfig;
use crate::store::ListQuery;
use crate::{Error, jobs};

/// How often the SDK's `poll` helpers should ask (`openai-poll-after-ms`).
const POLL_AFTER_MS: &str = "250";

struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code, message) = self.0.http();
        let body = json!({"error": {"message": message, "type": kind, "code": code, "param": null}});
        let mut resp = (status, Json(body)).into_response();
        if let Some(after) = self.0.retry_after() {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// The router, with `api` as its state and `config`'s body limit and body read timeout. Layers, outermost first:
/// the trace span, OpenAI error bodies on every error ([`edge::json_errors`], around the whole routing so that it
/// sees a 405's `Allow`), the body deadline, the declared-size check, then the extractors' own limit.
pub fn router(api: Arc<Api>, config: &HttpConfig) -> Router {
    let (max_body, idle) = (config.max_body_bytes, config.body_read_timeout());
    let routes = Router::new()
        .route("/v1/videos", get(list).post(create))
        .route("/v1/videos/{id}", get(retrieve).delete(delete))
        .route("/v1/videos/edits", post(edit))
        .route("/v1/videos/extensions", post(extend))
        .route("/v1/videos/{id}/remix", post(remix))
        .route("/v1/videos/{id}/content", get(content))
        .route("/v1/videos/{id}/events", get(events))
        .route("/v1/models", get(models))
        .fallback(edge::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |req, next| edge::refuse_oversized(max_body, req, next)))
        .layer(axum::middleware::from_fn(move |req, next| edge::body_deadline(idle, req, next)))
        .with_state(api);
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(edge::json_errors))
        .layer(axum::middleware::from_fn(traced))
}

/// Runs each request in a server span that continues the caller's `traceparent`, so jobs submitted over HTTP carry
/// the caller's trace through every stage.
async fn traced(req: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let span = vidmesh_runtime::telemetry::http_server_span(req.method(), req.uri().path(), req.headers());
    next.run(req).instrument(span).await
}

fn tenant(api: &Api, headers: &HeaderMap) -> Result<Tenant> {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    Ok(api.admission.authenticate(auth)?)
}

/// The OpenAI `video` object of a job (plus vidmesh's extra fields, which SDKs ignore).
pub fn video_object(job: &Job, retention_secs: u64) -> Value {
    let req = job.request.clone().unwrap_or_default();
    let state = JobState::try_from(job.state).unwrap_or(JobState::Queued);
    let status = match state {
        JobState::Queued | JobState::Unspecified => "queued",
        JobState::Running => "in_progress",
        JobState::Completed => "completed",
        JobState::Failed | JobState::Cancelled => "failed",
    };
    let error = match (state, &job.error) {
        (JobState::Cancelled, _) => json!({"code": "cancelled", "message": "the job was cancelled"}),
        (_, Some(e)) => json!({"code": e.code.to_ascii_lowercase(), "message": e.message}),
        _ => Value::Null,
    };
    let result = job.result.clone().unwrap_or_default();
    json!({
        "id": job.id,
        "object": "video",
        "model": req.model,
        "status": status,
        "progress": (job.progress * 100.0).floor() as i64,
        "created_at": job.created_at.map(|t| t.seconds),
        "completed_at": job.finished_at.map(|t| t.seconds),
        "expires_at": job.created_at.filter(|_| retention_secs > 0).map(|t| t.seconds + retention_secs as i64),
        "error": error,
        "prompt": req.prompt,
        "remixed_from_video_id": (!req.remixed_from.is_empty()).then(|| req.remixed_from.clone()),
        "seconds": format!("{}", req.seconds),
        "size": format!("{}x{}", req.width, req.height),
        "num_frames": req.num_frames,
        "fps": req.fps,
        "seed": req.seed,
        "num_inference_steps": req.num_inference_steps,
        "guidance_scale": req.guidance_scale,
        "cache": req.cache,
        "detection": if state == JobState::Completed {
            json!({"verdict": result.detection_verdict, "reasons": result.detection_reasons})
        } else {
            Value::Null
        },
    })
}

fn polled(job: &Job, retention_secs: u64) -> Response {
    let mut resp = Json(video_object(job, retention_secs)).into_response();
    resp.headers_mut().insert("openai-poll-after-ms", HeaderValue::from_static(POLL_AFTER_MS));
    resp
}

/// Submits `request` for `headers`' tenant, the `Idempotency-Key` header filling in the body's key.
async fn submit(api: &Api, tenant: &Tenant, headers: &HeaderMap, mut request: GenerateRequest) -> Result<Response> {
    if request.idempotency_key.is_empty() {
        request.idempotency_key =
            headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_default();
    }
    let job = api.submit(tenant, request, "http").await?;
    Ok(polled(&job, api.retention_secs))
}

fn conditioning(mode: ConditioningMode, reference: Option<Reference>, strength: f32) -> Conditioning {
    Conditioning { mode: mode as i32, reference, strength, ..Default::default() }
}

/// `POST /v1/videos`: text→video, or image→video with `input_reference`.
async fn create(State(api): State<Arc<Api>>, req: Request) -> Result<Response> {
    let tenant = tenant(&api, req.headers())?;
    let headers = req.headers().clone();
    let fields = Fields::read(req).await?;
    fields.only(&[COMMON, &["input_reference"]].concat())?;
    let mut request = generate_request(&fields.values)?;
    if let Some(r) = reference(&fields, "input_reference", &["image_url", "file_id"])? {
        request.conditioning = Some(conditioning(ConditioningMode::ImageToVideo, Some(r), 0.0));
    }
    submit(&api, &tenant, &headers, request).await
}

/// `POST /v1/videos/edits`: the video re-made with the prompt at `strength`.
async fn edit(State(api): State<Arc<Api>>, req: Request) -> Result<Response> {
    from_video(&api, req, ConditioningMode::Edit).await
}

/// `POST /v1/videos/extensions`: the video continued by `seconds`; the result is the stitched whole.
async fn extend(State(api): State<Arc<Api>>, req: Request) -> Result<Response> {
    from_video(&api, req, ConditioningMode::Extend).await
}

/// A job made from a `video` (an edit, which also takes `strength`, or an extension).
async fn from_video(api: &Api, req: Request, mode: ConditioningMode) -> Result<Response> {
    let tenant = tenant(api, req.headers())?;
    let headers = req.headers().clone();
    let fields = Fields::read(req).await?;
    let own: &[&str] = if mode == ConditioningMode::Edit { &["video", "strength"] } else { &["video"] };
    fields.only(&[COMMON, own].concat())?;
    let mut request = generate_request(&fields.values)?;
    let r = reference(&fields, "video", &["id"])?
        .ok_or_else(|| bad("video is required: upload a file or send {\"id\": …}".into()))?;
    let strength = number(&fields.values, "strength")?.unwrap_or(0.0) as f32;
    request.conditioning = Some(conditioning(mode, Some(r), strength));
    submit(api, &tenant, &headers, request).await
}

/// `POST /v1/videos/{id}/remix`: the finished job's parameters with a new prompt.
async fn remix(State(api): State<Arc<Api>>, Path(id): Path<String>, req: Request) -> Result<Response> {
    let tenant = tenant(&api, req.headers())?;
    let headers = req.headers().clone();
    let fields = Fields::read(req).await?;
    fields.only(&["prompt", "idempotency_key"])?;
    let prompt = text(&fields.values, "prompt")?;
    let key = match text(&fields.values, "idempotency_key")? {
        k if k.is_empty() => headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        k => k,
    };
    let job = api.remix(&tenant, &id, prompt, key).await?;
    Ok(polled(&job, api.retention_secs))
}

async fn retrieve(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response> {
    let tenant = tenant(&api, &headers)?;
    Ok(polled(&api.get(&tenant, &id).await?, api.retention_secs))
}

async fn list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let tenant = tenant(&api, &headers)?;
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => 20,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return Err(Error::InvalidArgument("limit must be between 1 and 100".into()).into()),
    };
    let ascending = match q.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => return Err(Error::InvalidArgument(format!("order must be asc or desc, not {o:?}")).into()),
    };
    let query = ListQuery { after: q.get("after").cloned().unwrap_or_default(), limit, ascending, states: Vec::new() };
    let (jobs, more) = api.list(&tenant, &query).await?;
    let data: Vec<Value> = jobs.iter().map(|j| video_object(j, api.retention_secs)).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "first_id": jobs.first().map(|j| j.id.clone()),
        "last_id": jobs.last().map(|j| j.id.clone()),
        "has_more": more,
    })))
}

async fn delete(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>> {
    let tenant = tenant(&api, &headers)?;
    api.delete(&tenant, &id).await?;
    Ok(Json(json!({"id": id, "object": "video.deleted", "deleted": true})))
}

async fn content(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    let tenant = tenant(&api, &headers)?;
    let variant = match q.get("variant").map(String::as_str) {
        None | Some("video") => Variant::Video,
        Some("thumbnail") => Variant::Thumbnail,
        Some("spritesheet") => Variant::Spritesheet,
        Some(v) => {
            return Err(
                Error::InvalidArgument(format!("variant must be video, thumbnail or spritesheet, not {v:?}")).into()
            );
        }
    };
    let (bytes, content_type) = api.content(&tenant, &id, variant).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

async fn events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let tenant = tenant(&api, &headers)?;
    let after = match headers.get("last-event-id").map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => {
            return Err(Error::InvalidArgument("Last-Event-ID must be an event sequence number".into()).into());
        }
    };
    let stream = api.watch(&tenant, &id, after).await?;
    let sse = stream.map(|item| {
        Ok(match item {
            Ok(ev) => {
                let kind = event_name(&ev);
                SseEvent::default().id(ev.sequence.to_string()).event(kind).data(event_json(&ev).to_string())
            }
            Err(e) => SseEvent::default().event("error").data(json!({"message": e.to_string()}).to_string()),
        })
    });
    Ok(Sse::new(sse).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The SSE event name of a job event.
fn event_name(ev: &JobEvent) -> &'static str {
    match ev.event {
        Some(Event::Accepted(_)) => "accepted",
        Some(Event::Queued(_)) => "queued",
        Some(Event::Encoding(_)) => "encoding",
        Some(Event::Denoising(_)) => "denoising",
        Some(Event::Decoding(_)) => "decoding",
        Some(Event::Classifying(_)) => "classifying",
        Some(Event::Completed(_)) => "completed",
        Some(Event::Failed(_)) => "failed",
        Some(Event::Cancelled(_)) => "cancelled",
        None => "unknown",
    }
}

/// A job event as JSON: its sequence, progress (0–100) and ETA, and the event's own fields.
fn event_json(ev: &JobEvent) -> Value {
    let mut v = json!({
        "id": ev.job_id, "sequence": ev.sequence, "type": event_name(ev),
        "progress": ev.progress * 100.0, "eta_seconds": ev.eta_seconds,
    });
    let extra = match &ev.event {
        Some(Event::Queued(q)) => json!({"position": q.position}),
        Some(Event::Denoising(d)) if !d.preview_png.is_empty() => {
            use base64::Engine as _;
            let png = base64::engine::general_purpose::STANDARD.encode(&d.preview_png);
            json!({"step": d.step, "total": d.total, "preview_png": png})
        }
        Some(Event::Denoising(d)) => json!({"step": d.step, "total": d.total}),
        Some(Event::Decoding(d)) => json!({"frames_done": d.frames_done, "frames_total": d.frames_total}),
        Some(Event::Completed(r)) => json!({
            "video_sha256": r.video.as_ref().map(|o| o.sha256.clone()),
            "video_bytes": r.video.as_ref().map(|o| o.bytes),
            "url": r.video.as_ref().map(|o| o.url.clone()),
            "detection": {"verdict": r.detection_verdict, "reasons": r.detection_reasons},
        }),
        Some(Event::Failed(e)) => json!({"error": {"code": e.code.to_ascii_lowercase(), "message": e.message}}),
        _ => json!({}),
    };
    if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
        a.extend(b);
    }
    v
}

async fn models(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>> {
    tenant(&api, &headers)?;
    let m = &api.manifest;
    let created = jobs::timestamp(std::time::SystemTime::now()).seconds;
    Ok(Json(json!({
        "object": "list",
        "data": [{"id": m.model.name, "object": "model", "created": created, "owned_by": "vidmesh",
                  "version": m.model.version, "description": m.model.description,
                  "conditioning": m.conditioning_modes(), "cache_tiers": m.cache_tiers(),
                  "default_cache": m.check_cache("").map(|t| t.as_str()).unwrap_or("off")}],
    })))
}

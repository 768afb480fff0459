//! Request bodies of the creating endpoints, from JSON or a multipart form (the SDKs send forms): typed fields
//! with messages naming the field, references (file parts, `{"id"}` / `{"file_id"}` objects, base64 data URLs),
//! and the rule that an unknown field is refused rather than ignored.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use vidmesh_proto::gateway::v1::GenerateRequest;
use vidmesh_proto::gateway::v1::conditioning::Reference;

use super::{ApiError, Result};
use crate::Error;

/// A request body's fields, from JSON or a multipart form (the SDK sends forms): text fields (a form's
/// `name[key]` fields nested as JSON objects, as the SDK sends `input_reference[image_url]`), and file parts.
pub(super) struct Fields {
    pub(super) values: Map<String, Value>,
    pub(super) files: HashMap<String, Bytes>,
}

pub(super) fn bad(m: String) -> ApiError {
    ApiError(Error::InvalidArgument(m))
}

impl Fields {
    pub(super) async fn read(req: Request) -> Result<Self> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut values = Map::new();
        let mut files = HashMap::new();
        if ct.starts_with("multipart/form-data") {
            let mut form = Multipart::from_request(req, &()).await.map_err(|e| bad(format!("multipart body: {e}")))?;
            while let Some(field) = form.next_field().await.map_err(|e| bad(format!("multipart body: {e}")))? {
                let name = field.name().unwrap_or_default().to_string();
                if field.file_name().is_some() {
                    let data = field.bytes().await.map_err(|e| bad(format!("multipart file {name}: {e}")))?;
                    files.insert(name, data);
                    continue;
                }
                // Text fields must be UTF-8: replacing what is not (as a lossy decode would) makes a prompt of "�".
                let data = field.bytes().await.map_err(|e| bad(format!("multipart field {name}: {e}")))?;
                let text = String::from_utf8(data.to_vec())
                    .map_err(|e| bad(format!("multipart field {name} is not UTF-8 text: {e}")))?;
                match name.split_once('[').and_then(|(outer, rest)| Some((outer, rest.strip_suffix(']')?))) {
                    Some((outer, inner)) => {
                        let entry = values.entry(outer.to_string()).or_insert_with(|| json!({}));
                        match entry.as_object_mut() {
                            Some(o) => o.insert(inner.to_string(), Value::String(text)),
                            None => return Err(bad(format!("{outer} is given both as a value and as {name}"))),
                        };
                    }
                    None => {
                        values.insert(name, Value::String(text));
                    }
                }
            }
            return Ok(Self { values, files });
        }
        // The Bytes extractor enforces the router's body limit (http.max_body_bytes).
        let body = Bytes::from_request(req, &()).await.map_err(|e| bad(format!("body: {}", e.body_text())))?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => values = m,
            Ok(_) => return Err(bad("the body must be a JSON object".into())),
            Err(e) => return Err(bad(format!("the body is not valid JSON: {e}"))),
        }
        Ok(Self { values, files })
    }

    /// Refuses any field not in `known`, and a file part for a field that is not a reference (nothing is ignored
    /// silently).
    pub(super) fn only(&self, known: &[&str]) -> Result<()> {
        if let Some(name) = self.files.keys().find(|n| !FILE_FIELDS.contains(&n.as_str())) {
            return Err(bad(format!(
                "{name} was sent as a file; send it as a text field (only {} take files)",
                FILE_FIELDS.join(" and ")
            )));
        }
        for name in self.values.keys().chain(self.files.keys()) {
            if !known.contains(&name.as_str()) {
                return Err(bad(format!(
                    "unknown field {name:?}; this endpoint accepts {} (docs/api.md)",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A finite number from a JSON number or a numeric string (forms carry strings); `"NaN"`, `"inf"` and strings
/// beyond f64's range are refused, not read as the non-finite values Rust would parse them to.
pub(super) fn number(fields: &Map<String, Value>, name: &str) -> Result<Option<f64>> {
    let x = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => {
            Some(s.trim().parse::<f64>().map_err(|_| bad(format!("{name} must be a number, not {s:?}")))?)
        }
        Some(v) => return Err(bad(format!("{name} must be a number, not {v}"))),
    };
    match x {
        Some(x) if !x.is_finite() => Err(bad(format!("{name} must be a finite number, not {x}"))),
        x => Ok(x),
    }
}

pub(super) fn whole<T: TryFrom<u64>>(fields: &Map<String, Value>, name: &str) -> Result<Option<T>> {
    let Some(x) = number(fields, name)? else { return Ok(None) };
    if x < 0.0 || x.fract() != 0.0 || x > 1e15 {
        return Err(bad(format!("{name} must be a whole number ≥ 0, not {x}")));
    }
    T::try_from(x as u64).map(Some).map_err(|_| bad(format!("{name} {x} is too large")))
}

pub(super) fn text(fields: &Map<String, Value>, name: &str) -> Result<String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(bad(format!("{name} must be a string, not {v}"))),
    }
}

/// The fields that may be file parts of a form (references).
const FILE_FIELDS: &[&str] = &["input_reference", "video"];

/// Fields every creating endpoint takes: the OpenAI ones and vidmesh's extensions.
pub(super) const COMMON: &[&str] = &[
    "prompt",
    "model",
    "seconds",
    "size",
    "num_frames",
    "fps",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "negative_prompt",
    "scheduler",
    "cache",
    "priority",
    "idempotency_key",
    "preview_every",
];

/// The common fields (see [`COMMON`]) as a [`GenerateRequest`].
pub(super) fn generate_request(f: &Map<String, Value>) -> Result<GenerateRequest> {
    let (mut width, mut height) = (0, 0);
    let size = text(f, "size")?;
    if !size.is_empty() {
        let parsed = size.split_once('x').and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
        // 0 would mean "the model's default" to the resolver; a size that says 0 is a mistake.
        let parsed = parsed.filter(|&(w, h): &(u32, u32)| w > 0 && h > 0);
        (width, height) = parsed.ok_or_else(|| bad(format!("size must be WIDTHxHEIGHT (e.g. 64x64), not {size:?}")))?;
    }
    Ok(GenerateRequest {
        model: text(f, "model")?,
        prompt: text(f, "prompt")?,
        negative_prompt: text(f, "negative_prompt")?,
        num_frames: whole(f, "num_frames")?.unwrap_or(0),
        seconds: number(f, "seconds")?.unwrap_or(0.0),
        width,
        height,
        fps: whole(f, "fps")?.unwrap_or(0),
        num_inference_steps: whole(f, "num_inference_steps")?.unwrap_or(0),
        guidance_scale: number(f, "guidance_scale")?.map(|g| g as f32),
        seed: whole(f, "seed")?,
        scheduler: text(f, "scheduler")?,
        cache: text(f, "cache")?,
        preview_every: whole(f, "preview_every")?.unwrap_or(0),
        priority: number(f, "priority")?.map_or(0, |p| p.clamp(-1e6, 1e6) as i32),
        idempotency_key: text(f, "idempotency_key")?,
        ..Default::default()
    })
}

/// A reference given as a file part, or as an object naming a previous job (`{"id"}`, `{"file_id"}`) or carrying an
/// image (`{"image_url"}`: a base64 data URL).
pub(super) fn reference(fields: &Fields, name: &str, keys: &[&str]) -> Result<Option<Reference>> {
    if let Some(data) = fields.files.get(name) {
        return Ok(Some(Reference::Data(data.to_vec())));
    }
    let Some(v) = fields.values.get(name) else { return Ok(None) };
    let Value::Object(o) = v else {
        return Err(bad(format!("{name} must be a file upload or an object with {}", keys.join(" or "))));
    };
    if let Some(k) = o.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {name}.{k}; {name} takes {}", keys.join(" or "))));
    }
    let get = |k: &str| text(o, k).map_err(|e| bad(format!("{name}.{}", e.0)));
    let (id, file_id, url) = (get("id")?, get("file_id")?, get("image_url")?);
    match (id.is_empty(), file_id.is_empty(), url.is_empty()) {
        (false, true, true) => Ok(Some(Reference::VideoId(id))),
        (true, false, true) => Ok(Some(Reference::VideoId(file_id))),
        (true, true, false) => {
            Ok(Some(Reference::Data(data_url(&url).map_err(|m| bad(format!("{name}.image_url: {m}")))?)))
        }
        _ => Err(bad(format!("{name} takes exactly one of {}", keys.join(", ")))),
    }
}

/// The bytes of a `data:<type>;base64,<data>` URL.
fn data_url(url: &str) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine as _;
    let Some(rest) = url.strip_prefix("data:") else {
        return Err("only data URLs (data:image/png;base64,…) are accepted: the gateway does not fetch remote URLs; \
                    upload the file instead"
            .into());
    };
    let (meta, data) = rest.split_once(',').ok_or("a data URL needs a comma before its data")?;
    if !meta.ends_with(";base64") {
        return Err("the data URL must be base64 (data:image/png;base64,…)".into());
    }
    base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("invalid base64: {e}"))
}

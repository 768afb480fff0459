//! The gRPC face of the classifier: translates the request's source for the engine and its report into the reply.

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};
use vidmesh_proto::classifier::v1::{
    C2paEvidence, C2paState, DetectRequest, DetectResponse, PassiveEvidence, Verdict as PbVerdict, WatermarkEvidence,
    WatermarkPayload, classifier_server::Classifier as ClassifierRpc, detect_request::Source,
};
use vidmesh_provenance::Provenance;
use vidmesh_runtime::Drain;

use crate::engine::verdict::Verdict;
use crate::engine::{self, Classifier, Report};
use crate::error::Error;

/// Shared by the handlers and the loader.
pub struct State {
    /// Set once the service is ready.
    pub classifier: OnceLock<Arc<Classifier>>,
    /// Collectors.
    pub metrics: crate::metrics::Metrics,
    /// Refuses new work once shutdown starts.
    pub drain: Drain,
}

/// The tonic service.
#[derive(Clone)]
pub struct Service(pub Arc<State>);

fn response(r: Report) -> DetectResponse {
    let verdict = match r.verdict {
        Verdict::NotDetected => PbVerdict::NotDetected,
        Verdict::Inconclusive => PbVerdict::Inconclusive,
        Verdict::Generated => PbVerdict::Generated,
    };
    let mut c2pa = C2paEvidence::default();
    let claim = match r.c2pa {
        Provenance::Absent => {
            c2pa.state = C2paState::Absent.into();
            None
        }
        Provenance::Invalid(failures) => {
            c2pa.state = C2paState::Invalid.into();
            c2pa.failures = failures;
            None
        }
        Provenance::Valid(s) => {
            c2pa.state = C2paState::ValidUntrusted.into();
            c2pa.signer = s.signer.unwrap_or_default();
            s.claim
        }
        Provenance::Trusted(s) => {
            c2pa.state = C2paState::Trusted.into();
            c2pa.signer = s.signer.unwrap_or_default();
            s.claim
        }
    };
    if let Some(c) = claim {
        (c2pa.model, c2pa.model_version, c2pa.prompt_sha256) = (c.model, c.model_version, c.prompt_sha256);
    }
    let passive = match &r.passive {
        None => PassiveEvidence::default(),
        Some((p, frames)) => PassiveEvidence {
            available: true,
            score: p.score,
            threshold: p.threshold,
            above_threshold: p.score > p.threshold,
            heldout_false_positives: p.false_positives,
            heldout_real_videos: p.real_videos,
            frames: *frames as u32,
        },
    };
    DetectResponse {
        passive: Some(passive),
        verdict: verdict.into(),
        reasons: r.reasons,
        watermark: Some(WatermarkEvidence {
            detected: r.watermark_detected,
            z: r.watermark.z,
            p_value: r.watermark.p_value,
            scale: r.watermark.scale,
            payload: r
                .watermark
                .payload
                .map(|p| WatermarkPayload { generator: u32::from(p.generator), job_tag: u32::from(p.tag) }),
        }),
        c2pa: Some(c2pa),
        width: r.width as u32,
        height: r.height as u32,
        frames: r.frames as u32,
        elapsed_ms: r.elapsed.as_secs_f64() * 1e3,
    }
}

#[tonic::async_trait]
impl ClassifierRpc for Service {
    async fn detect(&self, request: Request<DetectRequest>) -> Result<Response<DetectResponse>, Status> {
        let c = self.0.drain.ready(&self.0.classifier)?.clone();
        let source = match request.into_inner().source {
            None => return Err(Error::InvalidArgument("set video (the file's bytes) or uri".into()).into()),
            Some(Source::Video(v)) => engine::Source::Video(bytes::Bytes::from(v)),
            Some(Source::Uri(uri)) => engine::Source::Uri(uri),
        };
        let report = c.detect(source, &self.0.metrics).await?;
        tracing::info!(verdict = ?report.verdict, z = report.watermark.z, p = report.watermark.p_value, "detected");
        Ok(Response::new(response(report)))
    }
}

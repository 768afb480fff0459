//! The gRPC face of the gateway (`vidmesh.gateway.v1.Gateway`): authenticates from the `authorization` metadata,
//! translates to [`Api`] calls and back, nothing else.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};
use vidmesh_proto::gateway::v1::gateway_server::Gateway as GatewayRpc;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, GetJobRequest, Job, JobEvent, JobState, ListJobsRequest, ListJobsResponse,
    ListModelsRequest, ListModelsResponse, Model, RemixRequest, WatchJobRequest,
};

use crate::admission::Tenant;
use crate::api::Api;
use crate::store::ListQuery;

/// The tonic service.
#[derive(Clone)]
pub struct Service(pub Arc<Api>);

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;

impl Service {
    fn tenant<T>(&self, req: &Request<T>) -> Result<Tenant, Status> {
        let auth = req.metadata().get("authorization").map(|v| v.to_str().unwrap_or("?"));
        Ok(self.0.admission.authenticate(auth)?)
    }

    async fn events(&self, tenant: &Tenant, id: &str, after: u64) -> Result<EventStream, Status> {
        let stream = self.0.watch(tenant, id, after).await?;
        Ok(Box::pin(stream.map(|r| r.map_err(Status::from))))
    }
}

/// The model list of a manifest.
pub fn models(m: &vidmesh_model::Manifest) -> ListModelsResponse {
    ListModelsResponse {
        models: vec![Model {
            name: m.model.name.clone(),
            version: m.model.version.clone(),
            description: m.model.description.clone(),
            sizes: m.video.sizes_text(),
            frame_counts: m.video.frames.values(),
            fps: m.video.fps.values(),
            default_steps: m.scheduler.steps,
            default_guidance: m.scheduler.guidance,
            conditioning: m.conditioning_modes().into_iter().map(String::from).collect(),
            cache_tiers: m.cache_tiers().into_iter().map(String::from).collect(),
            default_cache: m.check_cache("").map(|t| t.as_str().to_string()).unwrap_or_default(),
        }],
    }
}

#[tonic::async_trait]
impl GatewayRpc for Service {
    type GenerateStream = EventStream;
    type WatchStream = EventStream;

    async fn generate(&self, req: Request<GenerateRequest>) -> Result<Response<EventStream>, Status> {
        let tenant = self.tenant(&req)?;
        let job = self.0.submit(&tenant, req.into_inner(), "grpc").await?;
        Ok(Response::new(self.events(&tenant, &job.id, 0).await?))
    }

    async fn remix(&self, req: Request<RemixRequest>) -> Result<Response<Job>, Status> {
        let tenant = self.tenant(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.0.remix(&tenant, &r.id, r.prompt, r.idempotency_key).await?))
    }

    async fn submit(&self, req: Request<GenerateRequest>) -> Result<Response<Job>, Status> {
        let tenant = self.tenant(&req)?;
        Ok(Response::new(self.0.submit(&tenant, req.into_inner(), "grpc").await?))
    }

    async fn get(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let tenant = self.tenant(&req)?;
        Ok(Response::new(self.0.get(&tenant, &req.get_ref().id).await?))
    }

    async fn list(&self, req: Request<ListJobsRequest>) -> Result<Response<ListJobsResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let r = req.into_inner();
        if r.limit > 100 {
            return Err(Status::invalid_argument(format!("limit {} is above 100", r.limit)));
        }
        if let Some((i, s)) = r.states.iter().enumerate().find(|(_, s)| JobState::try_from(**s).is_err()) {
            return Err(Status::invalid_argument(format!("states[{i}] = {s} is not a JobState")));
        }
        let q = ListQuery { after: r.after, limit: r.limit, ascending: false, states: r.states };
        let (jobs, more) = self.0.list(&tenant, &q).await?;
        let next_after = if more { jobs.last().map(|j| j.id.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(ListJobsResponse { jobs, next_after }))
    }

    async fn watch(&self, req: Request<WatchJobRequest>) -> Result<Response<EventStream>, Status> {
        let tenant = self.tenant(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.events(&tenant, &r.id, r.after_sequence).await?))
    }

    async fn cancel(&self, req: Request<CancelJobRequest>) -> Result<Response<Job>, Status> {
        let tenant = self.tenant(&req)?;
        Ok(Response::new(self.0.cancel(&tenant, &req.get_ref().id, Duration::from_secs(10)).await?))
    }

    async fn list_models(&self, req: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        self.tenant(&req)?;
        Ok(Response::new(models(&self.0.manifest)))
    }
}

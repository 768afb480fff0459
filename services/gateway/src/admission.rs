//! Admission, before any compute: who is calling (Bearer API key → tenant), whether the tenant is within its rate,
//! and whether the prompt passes the policy filter. (The queue bound and the tenant's active-job quota are checked
//! by the store when the job is written, so they hold across replicas.)
//!
//! Invariants: API keys are compared as SHA-256 digests and never logged; a refusal says which limit was hit and
//! when to retry; the policy reports the category and the operator's reason, never the matched term's position.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use vidmesh_proto::gateway::v1::GenerateRequest;

use crate::Error;
use crate::config::{AdmissionConfig, PolicyCategory, PolicyConfig, TenantConfig};

/// The tenant a call acts for.
pub type Tenant = Arc<TenantConfig>;

/// Authentication, rate limits and the prompt policy.
pub struct Admission {
    by_key: HashMap<String, Tenant>,
    anonymous: Option<Tenant>,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    policy: PolicyConfig,
    /// The retry-after for full queues and quotas.
    pub retry_after: Duration,
    /// Queue bound over all tenants.
    pub max_queued: u32,
}

fn limiter(t: &TenantConfig) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(t.rate_per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(t.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_minute(rate).allow_burst(burst))
}

/// Lowercase alphanumeric words of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn matches(category: &PolicyCategory, prompt: &[String]) -> bool {
    category.terms.iter().any(|term| {
        let term = words(term);
        !term.is_empty() && prompt.windows(term.len()).any(|w| w == term.as_slice())
    })
}

impl Admission {
    /// Checks the configuration (digests are 64 hex digits, names unique; `tenants_file` read and parsed) and
    /// builds the limiters.
    pub fn new(config: &AdmissionConfig, policy: &PolicyConfig) -> Result<Self, Error> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("admission: {m}")));
        let mut listed = config.tenants.clone();
        if !config.tenants_file.is_empty() {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct File {
                #[serde(default)]
                tenants: Vec<TenantConfig>,
            }
            let path = &config.tenants_file;
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::InvalidArgument(format!("admission.tenants_file {path}: {e}")))?;
            let file: File = toml::from_str(&text)
                .map_err(|e| Error::InvalidArgument(format!("admission.tenants_file {path}: {e}")))?;
            listed.extend(file.tenants);
        }
        let mut by_key = HashMap::new();
        let mut tenants: HashMap<String, Tenant> = HashMap::new();
        for t in &listed {
            if t.name.is_empty() || tenants.contains_key(&t.name) {
                return bad(format!("tenant names must be unique and non-empty ({:?})", t.name));
            }
            let tenant = Arc::new(t.clone());
            for digest in &t.key_sha256 {
                let d = digest.to_ascii_lowercase();
                if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!("tenant {:?}: key_sha256 entries must be 64 hex digits", t.name));
                }
                by_key.insert(d, tenant.clone());
            }
            tenants.insert(t.name.clone(), tenant);
        }
        let anonymous = (!config.anonymous_tenant.is_empty()).then(|| {
            tenants
                .entry(config.anonymous_tenant.clone())
                .or_insert_with(|| {
                    Arc::new(TenantConfig { name: config.anonymous_tenant.clone(), ..Default::default() })
                })
                .clone()
        });
        if by_key.is_empty() {
            match &anonymous {
                Some(t) => tracing::warn!(
                    tenant = %t.name,
                    "no API keys are configured: the gateway runs WITHOUT AUTHENTICATION (every caller, with any \
                     bearer key or none, is tenant {:?}); configure [[admission.tenants]] for production",
                    t.name
                ),
                None => tracing::warn!(
                    "no API keys and no admission.anonymous_tenant are configured: every call will be refused"
                ),
            }
        }
        for c in &policy.categories {
            if c.name.is_empty() || c.terms.iter().all(|t| words(t).is_empty()) {
                return bad(format!("policy category {:?} needs a name and at least one term", c.name));
            }
        }
        Ok(Self {
            limiters: tenants.iter().map(|(n, t)| (n.clone(), limiter(t))).collect(),
            by_key,
            anonymous,
            policy: policy.clone(),
            retry_after: Duration::from_secs(config.retry_after_secs),
            max_queued: config.max_queued,
        })
    }

    /// The tenant of an `authorization` header value (`Bearer KEY`), or the anonymous tenant when there is none
    /// and one is configured.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Tenant, Error> {
        // Without any keys (development), any bearer key is the anonymous tenant: SDKs insist on sending one.
        if let (true, Some(anonymous)) = (self.by_key.is_empty(), &self.anonymous) {
            return Ok(anonymous.clone());
        }
        let Some(value) = authorization else {
            return self.anonymous.clone().ok_or_else(|| {
                Error::Unauthenticated("an API key is required: send `authorization: Bearer <key>`".into())
            });
        };
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Error::Unauthenticated("the authorization header must be `Bearer <key>`".into()))?;
        self.by_key
            .get(&vidmesh_storage::sha256_hex(key.trim().as_bytes()))
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("the API key is not valid".into()))
    }

    /// Takes one submission from the tenant's rate.
    pub fn rate(&self, tenant: &TenantConfig) -> Result<(), Error> {
        let Some(limiter) = self.limiters.get(&tenant.name) else { return Ok(()) };
        limiter.check().map_err(|not_until| Error::Exhausted {
            message: format!(
                "tenant {:?} is over its rate of {} submissions per minute; retry later",
                tenant.name, tenant.rate_per_minute
            ),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()).max(Duration::from_secs(1)),
        })
    }

    /// Refuses prompts in a policy category.
    pub fn policy(&self, req: &GenerateRequest) -> Result<(), Error> {
        let mut texts = vec![words(&req.prompt)];
        if self.policy.check_negative_prompt {
            texts.push(words(&req.negative_prompt));
        }
        for c in &self.policy.categories {
            if texts.iter().any(|t| matches(c, t)) {
                let reason = if c.reason.is_empty() { "not allowed on this service".into() } else { c.reason.clone() };
                return Err(Error::PolicyRefused { category: c.name.clone(), reason });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        let config = AdmissionConfig {
            tenants: vec![TenantConfig {
                name: "acme".into(),
                key_sha256: vec![vidmesh_storage::sha256_hex(b"sk-acme")],
                rate_per_minute: 1,
                burst: 2,
                ..Default::default()
            }],
            anonymous_tenant: String::new(),
            ..Default::default()
        };
        let policy = PolicyConfig {
            categories: vec![PolicyCategory {
                name: "weapons".into(),
                terms: vec!["Machine Gun".into(), "bomb".into()],
                reason: "weapons are not allowed".into(),
            }],
            check_negative_prompt: false,
        };
        Admission::new(&config, &policy).unwrap()
    }

    #[test]
    fn tenants_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tenants.toml");
        let digest = vidmesh_storage::sha256_hex(b"sk-file");
        std::fs::write(&file, format!("[[tenants]]\nname = \"filed\"\nkey_sha256 = [\"{digest}\"]\n")).unwrap();
        let config = AdmissionConfig {
            tenants_file: file.display().to_string(),
            anonymous_tenant: String::new(),
            ..Default::default()
        };
        let a = Admission::new(&config, &PolicyConfig::default()).unwrap();
        assert_eq!(a.authenticate(Some("Bearer sk-file")).unwrap().name, "filed");
        std::fs::write(&file, "[[tenants]]\nname = \"x\"\nkeys = []\n").unwrap();
        let err = Admission::new(&config, &PolicyConfig::default()).err().unwrap().to_string();
        assert!(err.contains("tenants_file") && err.contains("keys"), "{err}");
    }

    #[test]
    fn keys_map_to_tenants_and_nothing_else_gets_in() {
        let a = admission();
        assert_eq!(a.authenticate(Some("Bearer sk-acme")).unwrap().name, "acme");
        for bad in [None, Some("Bearer sk-other"), Some("sk-acme"), Some("Basic x")] {
            assert!(matches!(a.authenticate(bad), Err(Error::Unauthenticated(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_rate_allows_the_burst_then_says_when() {
        let a = admission();
        let t = a.authenticate(Some("Bearer sk-acme")).unwrap();
        a.rate(&t).unwrap();
        a.rate(&t).unwrap();
        match a.rate(&t) {
            Err(Error::Exhausted { retry_after, .. }) => assert!(retry_after >= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_policy_matches_whole_words_and_phrases() {
        let a = admission();
        let p = |s: &str| a.policy(&GenerateRequest { prompt: s.into(), ..Default::default() });
        assert!(matches!(p("a MACHINE  gun on a hill"), Err(Error::PolicyRefused { .. })));
        assert!(matches!(p("a bomb!"), Err(Error::PolicyRefused { .. })));
        assert!(p("a bombastic machine that guns nothing").is_ok());
        assert!(p("a red circle").is_ok());
        let err = p("bomb").unwrap_err().to_string();
        assert!(err.contains("weapons") && err.contains("not allowed"), "{err}");
    }
}

//! The rules a gateway config must meet, checked when it loads ([`Validate`]): each problem names its key.

use vidmesh_runtime::config::{Checks, Validate};

use super::*;

impl Validate for Config {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks
            .section(prefix, "server", &self.server)
            .section(prefix, "telemetry", &self.telemetry)
            .section(prefix, "http", &self.http)
            .section(prefix, "store", &self.store)
            .section(prefix, "stages", &self.stages)
            .section(prefix, "admission", &self.admission)
            .section(prefix, "policy", &self.policy)
            .section(prefix, "limits", &self.limits)
            .require(!self.model.bundle.is_empty(), format_args!("{prefix}model.bundle"), "must name a bundle");
        let http = self.http.listen;
        for (name, addr) in [("listen", self.server.listen), ("metrics_listen", self.server.metrics_listen)] {
            checks.require(
                http != addr || http.port() == 0,
                format_args!("{prefix}http.listen"),
                format_args!("must differ from {prefix}server.{name} ({addr})"),
            );
        }
        checks.section(prefix, "storage", &self.storage);
    }
}

impl Validate for HttpConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks
            .at_least(format_args!("{prefix}max_body_bytes"), self.max_body_bytes, 1)
            .at_least(format_args!("{prefix}header_read_timeout_secs"), self.header_read_timeout_secs, 1)
            .at_least(format_args!("{prefix}body_read_timeout_secs"), self.body_read_timeout_secs, 1);
    }
}

impl Validate for StoreConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let postgres = self.url.starts_with("postgres:") || self.url.starts_with("postgresql:");
        // Only the scheme is echoed: the rest of the URL may hold a password.
        let scheme = self.url.split(':').next().unwrap_or_default();
        checks
            .require(
                postgres || self.url.starts_with("sqlite:"),
                format_args!("{prefix}url"),
                format_args!("must start with sqlite:// or postgres:// (the scheme is {scheme:?})"),
            )
            .at_least(format_args!("{prefix}max_connections"), self.max_connections, 1)
            .require(
                !postgres || self.max_connections >= 2,
                format_args!("{prefix}max_connections"),
                format_args!("must be at least 2 with PostgreSQL (is {})", self.max_connections),
            )
            .at_least(format_args!("{prefix}lease_secs"), self.lease_secs, 1)
            .at_least(format_args!("{prefix}poll_ms"), self.poll_ms, 10);
    }
}

impl Validate for StageConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            checks.require(
                crate::stages::host_port(endpoint).is_ok(),
                format_args!("{prefix}endpoints[{i}]"),
                format_args!("{endpoint:?} is not http://HOST:PORT or https://HOST:PORT"),
            );
        }
        checks
            .at_least(format_args!("{prefix}resolve_secs"), self.resolve_secs, 1)
            .at_least(format_args!("{prefix}connect_timeout_ms"), self.connect_timeout_ms, 1)
            .at_least(format_args!("{prefix}attempts"), self.attempts, 1)
            .require(
                self.max_backoff_ms >= self.backoff_ms,
                format_args!("{prefix}max_backoff_ms"),
                format_args!("must be at least backoff_ms ({} < {})", self.max_backoff_ms, self.backoff_ms),
            );
    }
}

impl Validate for StagesConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let required = [("text_encoder", &self.text_encoder), ("denoiser", &self.denoiser), ("decoder", &self.decoder)];
        for (name, stage) in required {
            checks.section(prefix, name, stage).require(
                !stage.endpoints.is_empty(),
                format_args!("{prefix}{name}.endpoints"),
                "must list at least one endpoint (only the classifier may have none)",
            );
        }
        checks
            .section(prefix, "classifier", &self.classifier)
            .section(prefix, "tls", &self.tls)
            .at_least(format_args!("{prefix}job_timeout_secs"), self.job_timeout_secs, 1)
            .at_least(format_args!("{prefix}url_ttl_secs"), self.url_ttl_secs, 1);
        let all = [("text_encoder", &self.text_encoder), ("denoiser", &self.denoiser)];
        let all = all.into_iter().chain([("decoder", &self.decoder), ("classifier", &self.classifier)]);
        for (name, stage) in all {
            for (i, endpoint) in stage.endpoints.iter().enumerate() {
                let Ok(target) = crate::stages::host_port(endpoint) else { continue };
                checks.require(
                    target.tls == self.tls.enabled(),
                    format_args!("{prefix}{name}.endpoints[{i}]"),
                    crate::stages::scheme_mismatch(endpoint, target.tls),
                );
            }
        }
    }
}

impl Validate for TenantConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.require(!self.name.is_empty(), format_args!("{prefix}name"), "must not be empty");
        for (i, digest) in self.key_sha256.iter().enumerate() {
            checks.require(
                digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                format_args!("{prefix}key_sha256[{i}]"),
                "must be 64 hex digits (the SHA-256 of an API key)",
            );
        }
        checks
            .at_least(format_args!("{prefix}max_active_jobs"), self.max_active_jobs, 1)
            .at_least(format_args!("{prefix}rate_per_minute"), self.rate_per_minute, 1)
            .at_least(format_args!("{prefix}burst"), self.burst, 1);
    }
}

impl Validate for AdmissionConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        for (i, tenant) in self.tenants.iter().enumerate() {
            checks.section(prefix, &format!("tenants[{i}]"), tenant);
            let first = self.tenants.iter().position(|t| t.name == tenant.name);
            checks.require(
                tenant.name.is_empty() || first == Some(i),
                format_args!("{prefix}tenants[{i}].name"),
                format_args!("{:?} is already the name of {prefix}tenants[{}]", tenant.name, first.unwrap_or(i)),
            );
        }
        checks.at_least(format_args!("{prefix}max_queued"), self.max_queued, 1);
        checks.at_least(format_args!("{prefix}retry_after_secs"), self.retry_after_secs, 1);
    }
}

impl Validate for PolicyCategory {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.require(!self.name.is_empty(), format_args!("{prefix}name"), "must not be empty");
        checks.require(
            self.terms.iter().any(|t| t.chars().any(char::is_alphanumeric)),
            format_args!("{prefix}terms"),
            "must hold at least one term with a letter or digit",
        );
    }
}

impl Validate for PolicyConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        for (i, category) in self.categories.iter().enumerate() {
            checks.section(prefix, &format!("categories[{i}]"), category);
        }
    }
}

impl Validate for LimitsConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let guidance = self.max_guidance;
        checks
            .at_least(format_args!("{prefix}max_prompt_bytes"), self.max_prompt_bytes, 1)
            .at_least(format_args!("{prefix}max_steps"), self.max_steps, 1)
            .at_least(format_args!("{prefix}max_reference_bytes"), self.max_reference_bytes, 1)
            .require(
                guidance.is_finite() && guidance > 0.0,
                format_args!("{prefix}max_guidance"),
                format_args!("must be a number greater than 0 (is {guidance})"),
            );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use vidmesh_runtime::config::load;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Loads the defaults overlaid with `toml` (a config file).
    fn from_file(toml: &str) -> Result<Config, vidmesh_runtime::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, toml).unwrap();
        load(Some(&file), &HashMap::new())
    }

    #[test]
    fn required_stages_need_endpoints_and_the_classifier_does_not() {
        let err = from_file("[stages.denoiser]\nendpoints = []\n").unwrap_err().to_string();
        assert!(err.contains("stages.denoiser.endpoints: must list at least one endpoint"), "{err}");
        let c = from_file("[stages.classifier]\nendpoints = []\n").unwrap();
        assert!(c.stages.classifier.endpoints.is_empty());
        let err = from_file("[stages.decoder]\nendpoints = [\"https://decoder\"]\n").unwrap_err().to_string();
        assert!(err.contains("stages.decoder.endpoints[0]"), "{err}");
    }

    #[test]
    fn https_endpoints_need_stages_tls_and_stages_tls_needs_https_everywhere() {
        let err = from_file("[stages.denoiser]\nendpoints = [\"https://denoiser:50051\"]\n").unwrap_err().to_string();
        let want =
            "stages.denoiser.endpoints[0]: \"https://denoiser:50051\" is https:// but stages.tls.ca_file is not set";
        assert!(err.contains(want), "{err}");
        let https: String = ["text_encoder", "denoiser", "decoder", "classifier"]
            .iter()
            .map(|s| format!("[stages.{s}]\nendpoints = [\"https://{s}:50051\"]\n"))
            .collect();
        let tls =
            "[stages.tls]\nca_file = \"/tls/ca.crt\"\ncert_file = \"/tls/tls.crt\"\nkey_file = \"/tls/tls.key\"\n";
        let c = from_file(&format!("{https}{tls}")).unwrap();
        assert!(c.stages.tls.enabled(), "the files are read when the gateway starts, not when its config loads");
        let half =
            "[stages.tls]\ncert_file = \"/tls/tls.crt\"\n[stages.text_encoder]\nendpoints = [\"https://te:1\"]\n";
        let err = from_file(half).unwrap_err().to_string();
        assert!(err.contains("stages.tls.key_file: must be set with stages.tls.cert_file"), "{err}");
        assert!(err.contains("stages.tls.ca_file: must be set with stages.tls.cert_file"), "{err}");
        let mixed = format!("{tls}[stages.text_encoder]\nendpoints = [\"https://te:1\"]\n");
        let err = from_file(&mixed).unwrap_err().to_string();
        let want = "stages.decoder.endpoints[0]: \"http://127.0.0.1:50053\" is http:// while stages.tls is set";
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("stages.text_encoder"), "{err}");
    }

    #[test]
    fn stage_intervals_and_attempts_are_at_least_one() {
        let vars = [("VIDMESH__STAGES__TEXT_ENCODER__ATTEMPTS", "0"), ("VIDMESH__STAGES__DECODER__RESOLVE_SECS", "0")];
        let err = load::<Config>(None, &env(&vars)).unwrap_err().to_string();
        assert!(err.contains("stages.text_encoder.attempts: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("stages.decoder.resolve_secs: must be at least 1 (is 0)"), "{err}");
        let err = load::<Config>(None, &env(&[("VIDMESH__STORE__POLL_MS", "5")])).unwrap_err().to_string();
        assert!(err.contains("store.poll_ms: must be at least 10 (is 5)"), "{err}");
    }

    #[test]
    fn the_http_api_needs_a_port_of_its_own() {
        let err = load::<Config>(None, &env(&[("VIDMESH__HTTP__LISTEN", "0.0.0.0:9094")])).unwrap_err().to_string();
        assert!(err.contains("http.listen: must differ from server.metrics_listen (0.0.0.0:9094)"), "{err}");
    }

    #[test]
    fn http_read_timeouts_are_at_least_a_second() {
        let vars = [("VIDMESH__HTTP__HEADER_READ_TIMEOUT_SECS", "0"), ("VIDMESH__HTTP__BODY_READ_TIMEOUT_SECS", "0")];
        let err = load::<Config>(None, &env(&vars)).unwrap_err().to_string();
        assert!(err.contains("http.header_read_timeout_secs: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("http.body_read_timeout_secs: must be at least 1 (is 0)"), "{err}");
        let c = from_file("[http]\nheader_read_timeout_secs = 5\nbody_read_timeout_secs = 7\n").unwrap();
        assert_eq!(
            (c.http.header_read_timeout(), c.http.body_read_timeout()),
            (Duration::from_secs(5), Duration::from_secs(7))
        );
    }

    #[test]
    fn tenants_have_unique_names_and_sane_quotas() {
        let toml = "[[admission.tenants]]\nname = \"acme\"\n\n[[admission.tenants]]\nname = \"acme\"\nburst = 0\n\n\
                    [[admission.tenants]]\nkey_sha256 = [\"abc\"]\n";
        let err = from_file(toml).unwrap_err().to_string();
        assert!(
            err.contains("admission.tenants[1].name: \"acme\" is already the name of admission.tenants[0]"),
            "{err}"
        );
        assert!(err.contains("admission.tenants[1].burst: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("admission.tenants[2].name: must not be empty"), "{err}");
        assert!(err.contains("admission.tenants[2].key_sha256[0]: must be 64 hex digits"), "{err}");
        let err = from_file("[[policy.categories]]\nname = \"\"\nterms = []\n").unwrap_err().to_string();
        assert!(err.contains("policy.categories[0].name: must not be empty"), "{err}");
        assert!(err.contains("policy.categories[0].terms"), "{err}");
    }

    #[test]
    fn a_postgres_store_needs_two_connections_and_the_url_is_not_echoed() {
        let vars = [("VIDMESH__STORE__URL", "postgres://u:secret@db/jobs"), ("VIDMESH__STORE__MAX_CONNECTIONS", "1")];
        let err = load::<Config>(None, &env(&vars)).unwrap_err().to_string();
        assert!(err.contains("store.max_connections: must be at least 2 with PostgreSQL (is 1)"), "{err}");
        let err = load::<Config>(None, &env(&[("VIDMESH__STORE__URL", "mysql://u:secret@db/jobs")])).unwrap_err();
        assert!(err.to_string().contains("store.url: must start with sqlite:// or postgres://"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}

//! What every connection shares: the configuration, the store, the backend and the log.

use crate::backend::Backend;
use crate::backend::local::LocalBackend;
use crate::backend::toopher::ToopherBackend;
use crate::config::{Backend as BackendKind, Config};
use crate::logging::Log;
use crate::policy::{Gate, Policy};
use crate::store::{Limits, Shared, Store};
use std::sync::Arc;

pub struct Service {
    pub config: Config,
    pub log: Arc<Log>,
    pub(super) store: Shared,
    pub(super) backend: Box<dyn Backend>,
    /// The issuer shown in authenticator apps.
    pub(super) issuer: String,
    /// The policy the login asks before the backend, with the grace book.
    pub(super) policy: Gate,
    /// Root, looked up once: the module inside sshd, sudo and login connects as root for
    /// every login, and looking it up each time cost a trip to a blocking thread.
    pub(super) root_peer: std::sync::OnceLock<crate::authz::Peer>,
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The rate limit of `config`.
pub fn limits_of(config: &Config) -> Limits {
    Limits {
        max_failures: config.rate_limit.max_failures.0,
        window: config.rate_limit.window.0,
    }
}

impl Service {
    /// The configured backend over `store`. Fails when the backend cannot be set up
    /// (credentials, CA file).
    pub fn new(config: Config, store: Store, log: Log) -> Result<Service, String> {
        let log = Arc::new(log);
        let shared = Shared::new(Box::new(store), Arc::clone(&log));
        Service::on_store(config, shared, log)
    }

    /// A service on a store the caller made (the fleet's shared store, whose calls run
    /// side by side: [`Shared::concurrent`]).
    pub fn on_store(config: Config, shared: Shared, log: Arc<Log>) -> Result<Service, String> {
        let limits = limits_of(&config);
        let backend: Box<dyn Backend> = match config.backend {
            BackendKind::Toopher => Box::new(ToopherBackend::new(
                &config.toopher,
                &host_name(),
                shared.clone(),
                limits,
            )?),
            BackendKind::Local => Box::new(LocalBackend::new(
                shared.clone(),
                limits,
                config.enrollment_ttl.0,
            )),
        };
        if let Some(w) =
            crate::budget::warning(config.rate_limit.max_failures.0, config.rate_limit.window.0)
        {
            log.warn(&w);
        }
        Ok(Service::with_backend(config, log, shared, backend))
    }

    /// A service with a backend of the caller's (tests use a fake one).
    pub fn with_backend(
        config: Config,
        log: Arc<Log>,
        store: Shared,
        backend: Box<dyn Backend>,
    ) -> Service {
        let issuer = match &config.issuer {
            Some(l) => l.0.clone(),
            None => host_name(),
        };
        let policy = Gate::new(Policy::new(config.policy.clone(), config.availability));
        Service {
            config,
            log,
            store,
            backend,
            issuer,
            policy,
            root_peer: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn limits(&self) -> Limits {
        limits_of(&self.config)
    }
}

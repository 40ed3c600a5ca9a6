//! The settings a [`Triggers`] service starts with: workers, action timeout, handlers and the
//! HTTP client.

use std::sync::Arc;
use std::time::Duration;

use super::catalog::load;
use super::{exec, run, Handler, HttpPost, Invocation, Triggers};
use crate::error::Result;
use crate::manager::QueueManager;

/// Settings of a [`Triggers`] service.
pub struct Builder {
    workers: usize,
    action_timeout: Duration,
    runner_handlers: Vec<(String, String, Handler)>,
    http: Option<Arc<dyn HttpPost>>,
}

impl Builder {
    /// Threads that run actions (default 5, MSMQ's `InitialThreads`).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n.max(1);
        self
    }

    /// How long an executable or HTTP action may take before it counts as failed (default 60 s).
    pub fn action_timeout(mut self, timeout: Duration) -> Builder {
        self.action_timeout = timeout;
        self
    }

    /// Registers the in-process handler that `COM\t<prog_id>\t<method>` actions call.
    ///
    /// A handler runs on a worker thread and must not change this service's definitions: a
    /// change may wait for the handler's own trigger to stop, which waits for the handler.
    pub fn handler(
        mut self,
        prog_id: &str,
        method: &str,
        f: impl Fn(&Invocation<'_>) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Builder {
        self.runner_handlers
            .push((prog_id.to_owned(), method.to_owned(), Arc::new(f)));
        self
    }

    /// What performs `HTTP` actions (without one they fail).
    pub fn http(mut self, http: Arc<dyn HttpPost>) -> Builder {
        self.http = Some(http);
        self
    }

    /// Loads the definitions from `qm`'s catalog and starts a monitor for each enabled trigger.
    pub fn start(self, qm: &QueueManager) -> Result<Triggers> {
        let handlers = exec::Handlers::default();
        for (p, m, h) in self.runner_handlers {
            handlers.insert(&p, &m, h);
        }
        let runner = exec::Runner {
            handlers,
            http: self.http,
            timeout: self.action_timeout,
        };
        let defs = load(qm)?;
        let svc = run::Service::start(qm.clone(), defs, runner, self.workers);
        Ok(Triggers { svc })
    }
}

impl Triggers {
    /// A service with default settings.
    pub fn builder() -> Builder {
        Builder {
            workers: 5,
            action_timeout: Duration::from_secs(60),
            runner_handlers: Vec::new(),
            http: None,
        }
    }
}

//! Scale-out (feature `cluster`): a permit run on an Apache DataFusion Ballista cluster, with the
//! engine's own kernels as DataFusion functions on every executor.
//!
//! Ballista sends functions by name only, so this project runs its own cluster processes
//! ([`scheduler`], [`executor`]), each with [`functions::all`] registered; the client connects
//! with [`connect`] (or starts a cluster inside its own process with [`in_process`]) and [`run`]s
//! the plan: [`query`] compiles each dataset into DataFusion queries, [`run::run`] executes them
//! and commits the delivery as a single-node run does; an anonymised dataset's profile is
//! aggregated on the cluster and its search runs on the client ([`anonymise`]). Keys never
//! travel: each process loads its own ([`functions::KeyRing`]), and a function refuses a key
//! whose fingerprint is not the plan's.

pub mod anonymise;
pub mod functions;
pub mod query;
pub mod run;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::kernels::keys::SecretKey;
use crate::plan::Plan;
use crate::report::RunReport;
use functions::KeyRing;

/// A file the client writes into the staging folder for every process of the cluster to read
/// (named in plans by path and SHA-256, which each process checks). Removed when dropped: before
/// the commit, and on failure.
pub struct SharedFile {
    pub path: PathBuf,
    pub sha256: String,
}

impl SharedFile {
    /// Writes `value` as JSON at `path`.
    pub fn json(path: PathBuf, value: &impl serde::Serialize) -> Result<SharedFile> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&path, &bytes).map_err(|e| Error::output(&path, e))?;
        let sha256 = functions::sha256_hex(&bytes);
        Ok(SharedFile { path, sha256 })
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The engine's error of a DataFusion or Ballista failure.
pub fn error_of(e: &datafusion::error::DataFusionError) -> Error {
    functions::recover(&e.to_string())
}

/// A runtime for the cluster's asynchronous client and processes.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

/// A session state with the engine's functions bound to `keys`.
fn state_with(config: SessionConfig, keys: Arc<KeyRing>) -> SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_scalar_functions(functions::all(keys))
        .build()
}

/// Registers the engine's functions on a client context: Ballista's upgrade of a state for the
/// cluster keeps only its own functions.
fn with_functions(ctx: SessionContext, keys: Arc<KeyRing>) -> Result<SessionContext> {
    for udf in functions::all(keys) {
        ctx.register_udf(udf.as_ref().clone());
    }
    Ok(ctx)
}

/// Connects to the scheduler at `url` (`df://HOST:PORT`). The client holds no key: the
/// executors compute with theirs.
pub async fn connect(url: &str) -> Result<SessionContext> {
    let keys = Arc::new(KeyRing::default());
    let state = state_with(SessionConfig::new(), keys.clone());
    let ctx = SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "cannot reach the cluster's scheduler at {url}: {e}"
            ))
        })?;
    with_functions(ctx, keys)
}

/// A scheduler and one executor inside this process, computing with `keys` (tests, and
/// `--cluster local`).
pub async fn in_process(keys: KeyRing, executors_cores: usize) -> Result<SessionContext> {
    use ballista::prelude::SessionConfigExt;
    let keys = Arc::new(keys);
    let config = SessionConfig::new_with_ballista()
        .with_ballista_standalone_parallelism(executors_cores.max(1));
    let state = state_with(config, keys.clone());
    let ctx = SessionContext::standalone_with_state(state)
        .await
        .map_err(|e| Error::Internal(format!("cannot start an in-process cluster: {e}")))?;
    with_functions(ctx, keys)
}

/// The keys a permit names, loaded as a single-node run loads them (an in-process cluster).
pub fn permit_keys(plan: &Plan) -> Result<KeyRing> {
    let keys = plan
        .permit
        .spec
        .keys
        .keys()
        .map(|name| Ok((name.clone(), plan.permit.load_key(name)?)))
        .collect::<Result<BTreeMap<String, SecretKey>>>()?;
    Ok(KeyRing::new(keys))
}

/// Runs `plan` on the cluster at `url` (`df://HOST:PORT`), or on one started in this process
/// with the permit's own keys (`local`), and commits the delivery.
pub fn run(plan: &Plan, url: &str) -> Result<RunReport> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let ctx = match url {
            "local" => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                in_process(permit_keys(plan)?, cores).await?
            }
            url => connect(url).await?,
        };
        run::run(plan, &ctx).await
    })
}

/// Serves a scheduler on `bind` until the process is stopped. Executors pull their tasks; one
/// silent for `executor_timeout_seconds` is taken for dead and its tasks run again elsewhere.
pub fn scheduler(bind: SocketAddr, executor_timeout_seconds: u64) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let keys = Arc::new(KeyRing::default());
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |config: SessionConfig| {
            let mut state = ballista_core::utils::default_session_builder(config)?;
            for udf in functions::all(keys.clone()) {
                datafusion::execution::FunctionRegistry::register_udf(&mut state, udf)?;
            }
            Ok(state)
        });
    let timeout = executor_timeout_seconds.max(2);
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).max(1),
        no_executors_grace_period_seconds: timeout,
        ..Default::default()
    }
    .with_scheduler_policy(ballista_core::config::TaskSchedulingPolicy::PullStaged)
    .with_override_session_builder(session_builder);
    let config = Arc::new(config);
    runtime()?.block_on(async {
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(|e| Error::Internal(format!("scheduler: {e}")))?;
        tracing::info!(address = %bind, "scheduler listening");
        ballista_scheduler::scheduler_process::start_server(cluster, bind, config)
            .await
            .map_err(|e| Error::Internal(format!("scheduler: {e}")))
    })
}

/// How often an executor tells the scheduler it is alive: well within any scheduler's timeout.
pub const EXECUTOR_HEARTBEAT_SECONDS: u64 = 1;

/// An executor's place in the cluster.
pub struct ExecutorOptions {
    pub scheduler: SocketAddr,
    /// Where this executor serves its results (Arrow Flight) and its gRPC service (next port).
    pub bind: SocketAddr,
    /// Task slots (0: every core).
    pub cores: usize,
    pub work_dir: Option<std::path::PathBuf>,
}

/// Serves an executor with `keys` until the process is stopped.
pub fn executor(options: ExecutorOptions, keys: KeyRing) -> Result<()> {
    use ballista_core::registry::BallistaFunctionRegistry;
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    tracing::info!(keys = %keys.describe(), "executor keys loaded");
    let mut registry = BallistaFunctionRegistry::default();
    for udf in functions::all(Arc::new(keys)) {
        registry
            .scalar_functions
            .insert(udf.name().to_string(), udf);
    }
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(options.bind.ip().to_string()),
        port: options.bind.port(),
        grpc_port: options.bind.port() + 1,
        scheduler_host: options.scheduler.ip().to_string(),
        scheduler_port: options.scheduler.port(),
        vcores: options.cores,
        task_scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        executor_heartbeat_interval_seconds: EXECUTOR_HEARTBEAT_SECONDS,
        work_dir: options.work_dir.map(|d| d.display().to_string()),
        override_function_registry: Some(Arc::new(registry)),
        ..Default::default()
    };
    runtime()?.block_on(async {
        start_executor_process(Arc::new(config))
            .await
            .map_err(|e| Error::Internal(format!("executor: {e}")))
    })
}

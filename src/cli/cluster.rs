//! `ehds-prep cluster scheduler|executor`: the processes of an Apache DataFusion Ballista cluster
//! that runs permits (`ehds-prep run --cluster df://HOST:PORT`), with the engine's functions
//! registered. Built with the `cluster` feature (`cargo build --release --features cluster`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep cluster scheduler --bind 10.0.0.1:50050\n  ehds-prep cluster executor --scheduler 10.0.0.1:50050 --bind 10.0.0.2:50051 --key linkage=/secure/keys/linkage.hex\n  ehds-prep cluster executor --scheduler 10.0.0.1:50050 --key linkage=env:EHDS_LINKAGE_KEY";

/// Run a process of a cluster that runs permits (feature `cluster`).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    process: Process,
}

// Without the `cluster` feature the options are parsed, then refused.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(clap::Subcommand)]
enum Process {
    /// Serve the scheduler: clients submit permits' queries to it, executors take its tasks.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Seconds without a heartbeat after which an executor is taken for dead and its tasks
        /// run again on the others.
        #[arg(long, default_value_t = 30)]
        executor_timeout: u64,
    },
    /// Serve an executor: it runs tasks with its own keys, loaded at start.
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: SocketAddr,
        /// Address to serve results on (Arrow Flight); the next port serves its gRPC service.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: SocketAddr,
        /// A key the permits' domains name: NAME=FILE (hex or base64 text, readable by its owner
        /// only) or NAME=env:VARIABLE. Repeat for each key. A task whose plan names a key by
        /// another fingerprint is refused.
        #[arg(long = "key", value_name = "NAME=SOURCE")]
        keys: Vec<String>,
        /// Accept key files that others may read (demonstration keys only).
        #[arg(long)]
        allow_readable_key_files: bool,
        /// Task slots (0: one per core).
        #[arg(long, default_value_t = 0)]
        cores: usize,
        /// Folder for the executor's shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

#[cfg(feature = "cluster")]
pub fn execute(args: Args) -> anyhow::Result<()> {
    use ehds_prep::cluster;
    use ehds_prep::kernels::keys::SecretKey;
    match args.process {
        Process::Scheduler {
            bind,
            executor_timeout,
        } => Ok(cluster::scheduler(bind, executor_timeout)?),
        Process::Executor {
            scheduler,
            bind,
            keys,
            allow_readable_key_files,
            cores,
            work_dir,
        } => {
            let mut ring = std::collections::BTreeMap::new();
            for entry in keys {
                let Some((name, source)) = entry.split_once('=') else {
                    return Err(ehds_prep::Error::Usage(format!(
                        "--key {entry}: give NAME=FILE or NAME=env:VARIABLE"
                    ))
                    .into());
                };
                let key = match source.strip_prefix("env:") {
                    Some(var) => SecretKey::from_env(var)?,
                    None => SecretKey::from_private_file(
                        std::path::Path::new(source),
                        allow_readable_key_files,
                    )?,
                };
                ring.insert(name.to_string(), key);
            }
            let options = cluster::ExecutorOptions {
                scheduler,
                bind,
                cores,
                work_dir,
            };
            Ok(cluster::executor(
                options,
                cluster::functions::KeyRing::new(ring),
            )?)
        }
    }
}

#[cfg(not(feature = "cluster"))]
pub fn execute(args: Args) -> anyhow::Result<()> {
    let _ = args.process;
    Err(not_built().into())
}

/// The error of a cluster command in a build without the `cluster` feature.
#[cfg(not(feature = "cluster"))]
pub fn not_built() -> ehds_prep::Error {
    ehds_prep::Error::Usage(
        "this build of ehds-prep has no cluster support: build it with \
         `cargo build --release --features cluster`"
            .into(),
    )
}

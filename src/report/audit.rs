//! The audit log: one JSON line appended per run, in the file the permit names, so that an access body
//! can verify each permit's processing and a holder can report its effort (the fee it may claim is
//! based on its costs). Counts, fingerprints and durations only: never a value, never a key.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::delivery::Staging;
use crate::permit::Permit;
use crate::plan::Plan;
use crate::report::RunReport;

/// The audit of one command that writes a delivery (`run`, `link`): started when the command
/// starts, written when it ends. Its record is appended to the permit's audit log *before* the
/// delivery is committed, so that a log that cannot be written commits nothing; a commit that then
/// fails appends a second record with the failure. A run whose audit log fails is an output error.
pub struct Audit {
    log: Option<std::path::PathBuf>,
    event: &'static str,
    permit: Permit,
    key_fingerprints: Vec<(String, String)>,
    started_unix: u64,
    clock: std::time::Instant,
}

impl Audit {
    pub fn start(
        event: &'static str,
        permit: &Permit,
        key_fingerprints: Vec<(String, String)>,
    ) -> Audit {
        Audit {
            log: permit
                .spec
                .output
                .audit_log
                .as_ref()
                .map(|l| permit.resolve(l)),
            event,
            permit: permit.clone(),
            key_fingerprints,
            started_unix: unix_now(),
            clock: std::time::Instant::now(),
        }
    }

    /// The audit of a plan's run, with its domains' key fingerprints.
    pub fn of_run(plan: &Plan) -> Audit {
        let fingerprints = plan
            .domains
            .values()
            .map(|d| (d.name.clone(), d.key_fingerprint.clone()))
            .collect();
        Self::start("run", &plan.permit, fingerprints)
    }

    fn append(&self, result: std::result::Result<&RunReport, &crate::Error>) -> crate::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        AuditRecord::of(
            self.event,
            &self.permit,
            self.key_fingerprints.clone(),
            self.started_unix,
            self.clock.elapsed().as_millis(),
            result,
        )
        .append(log)
    }

    /// A failure's record: its own failure is only a warning, as the failure is the outcome.
    fn append_failure(&self, e: &crate::Error) {
        if let Err(logged) = self.append(Err(e)) {
            tracing::warn!("{logged}");
        }
    }

    /// Audits a written delivery and commits it, or audits the failure that stopped it. `outcome`
    /// is what the command made beside the staged delivery, and `report` its run report.
    pub fn commit<T>(
        self,
        written: crate::Result<(Staging, T)>,
        report: impl Fn(&T) -> &RunReport,
    ) -> crate::Result<T> {
        let (staging, outcome) = match written {
            Ok(written) => written,
            Err(e) => {
                self.append_failure(&e);
                return Err(e);
            }
        };
        self.append(Ok(report(&outcome)))?;
        match staging.commit() {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                Ok(outcome)
            }
            Err(e) => {
                self.append_failure(&e);
                Err(e)
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuditRecord {
    pub event: &'static str,
    pub permit_id: String,
    pub permit_sha256: String,
    pub engine_version: &'static str,
    pub started_unix: u64,
    pub ended_unix: u64,
    /// `ok`, or the failure's exit code and message (which names places, never values).
    pub outcome: String,
    pub exit_code: i32,
    pub output: String,
    pub key_fingerprints: Vec<(String, String)>,
    pub datasets: Vec<DatasetCounts>,
    pub wall_ms: u128,
    pub timings_ms: Option<crate::report::Timings>,
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct DatasetCounts {
    pub name: String,
    pub rows_read: u64,
    pub rows_delivered: u64,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// User and system CPU time of this process so far, in milliseconds.
pub fn cpu_ms() -> (u64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    (ms(usage.ru_utime), ms(usage.ru_stime))
}

impl AuditRecord {
    /// The record of any command that writes a delivery (`run`, `link`), with the fingerprints of
    /// the keys it used.
    pub fn of(
        event: &'static str,
        permit: &Permit,
        key_fingerprints: Vec<(String, String)>,
        started_unix: u64,
        wall_ms: u128,
        result: std::result::Result<&RunReport, &crate::Error>,
    ) -> AuditRecord {
        let (cpu_user_ms, cpu_system_ms) = cpu_ms();
        let (outcome, exit_code) = match result {
            Ok(_) => ("ok".to_string(), 0),
            Err(e) => (e.to_string(), e.exit_code()),
        };
        let report = result.ok();
        AuditRecord {
            event,
            permit_id: permit.spec.permit.id.clone(),
            permit_sha256: permit.sha256.clone(),
            engine_version: crate::ENGINE_VERSION,
            started_unix,
            ended_unix: unix_now(),
            outcome,
            exit_code,
            output: permit.output_dir().display().to_string(),
            key_fingerprints,
            datasets: report
                .map(|r| {
                    r.datasets
                        .iter()
                        .map(|d| DatasetCounts {
                            name: d.name.clone(),
                            rows_read: d.rows_read,
                            rows_delivered: d.rows_delivered,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            wall_ms,
            timings_ms: report.map(|r| r.timings_ms.clone()),
            cpu_user_ms,
            cpu_system_ms,
        }
    }

    /// Appends this record as one line.
    pub fn append(&self, log: &Path) -> crate::Result<()> {
        append_line(log, &serde_json::to_string(self).expect("serialisable"))
    }
}

/// Appends one line to a JSON-lines log (created if missing) and makes it durable.
pub fn append_line(log: &Path, line: &str) -> crate::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .and_then(|mut f| writeln!(f, "{line}").and_then(|_| f.sync_all()))
        .map_err(|e| crate::Error::output(log, format!("cannot append to the audit log: {e}")))
}

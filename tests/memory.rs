//! Bounded memory: a record-level run (cohort, opt-out, pseudonyms, generalisation: no state that
//! grows with the extract) keeps nearly the same peak memory when its extract triples. The peak is
//! the run's own, measured by the kernel (`getrusage` of the child processes), in its own test binary
//! so that no other test's processes count.
//!
//! `EHDS_MEMORY_PEOPLE` sets the smaller population (default 200,000 people, about 350,000 stays);
//! 2,860,000 gives about 5M then 15M stays.

mod common;

use common::{repo, run_ok};

/// The largest resident set of any child process waited for so far, in kB.
fn children_peak_kb() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we own; RUSAGE_CHILDREN is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    usage.ru_maxrss
}

/// The hospital's stays-only permit over `data`, in batches of 65,536 rows, delivering to `out`.
fn stays_permit(dir: &std::path::Path, data: &std::path::Path, out: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("configs/hospital.toml")).unwrap();
    let start = text.find("[[datasets]]\nname = \"patients\"").unwrap();
    let end = text.find("[[datasets]]\nname = \"stays\"").unwrap();
    let text = format!("{}{}", &text[..start], &text[end..])
        .replace(
            "dir = \"../out/hospital\"",
            &format!("dir = \"{out}\"\nbatch_rows = 65536"),
        )
        .replace(
            "\"../sample-data/DEMO-KEY",
            &format!("\"{}/sample-data/DEMO-KEY", repo().display()),
        )
        .replace("\"../sample-data/", &format!("\"{}/", data.display()));
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn peak_memory_stays_flat_when_the_extract_triples() {
    let people: usize = std::env::var("EHDS_MEMORY_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tmp = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for (name, n) in [("small", people), ("large", 3 * people)] {
        let data = tmp.path().join(name);
        ehds_prep::generate::write_extracts(&data, n, 7).unwrap();
        let rows = std::fs::read_to_string(data.join("hospital/stays.csv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        run_ok(&stays_permit(tmp.path(), &data, &format!("out-{name}")));
        // The children's peak so far: the larger run's own peak once it exceeds the smaller's.
        peaks.push((rows, children_peak_kb()));
        std::fs::remove_dir_all(&data).unwrap();
    }
    let [(small_rows, small_kb), (large_rows, large_kb)] = [peaks[0], peaks[1]];
    eprintln!(
        "stays {small_rows} rows: peak {} MB; {large_rows} rows: peak {} MB",
        small_kb / 1024,
        large_kb / 1024
    );
    assert!(large_rows > 29 * small_rows / 10, "the extract must triple");
    assert!(
        (large_kb as f64) < 1.25 * small_kb as f64,
        "peak memory grew from {small_kb} kB to {large_kb} kB when the extract tripled"
    );
}

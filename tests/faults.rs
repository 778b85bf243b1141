//! Faults: a run killed at any moment leaves no delivery, or a complete one, at the output path; a
//! rerun then gives byte-identical files. Two runs never write one output at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

/// A generated extract (about 350k stays and 140k patients) and the hospital permit over it.
fn generated_workspace(dir: &Path) -> PathBuf {
    let data = dir.join("sample-data");
    ehds_prep::generate::write_extracts(&data, 200_000, 11).unwrap();
    demo_keys_to(dir);
    let permit = dir.join("configs/hospital.toml");
    std::fs::copy(repo().join("configs/hospital.toml"), &permit).unwrap();
    permit
}

fn delivery_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    ["patients.parquet", "stays.parquet", "manifest.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap()))
        .collect()
}

#[test]
fn a_run_killed_anywhere_leaves_no_partial_delivery_and_reruns_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = generated_workspace(tmp.path());
    let out = tmp.path().join("out/hospital");
    let started = Instant::now();
    run_ok(&permit);
    let duration = started.elapsed();
    let reference = delivery_files(&out);

    let points = 20;
    let mut killed_before_commit = 0;
    for k in 0..points {
        std::fs::remove_dir_all(&out).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
            .args(["run", "--permit", permit.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill points spread from start-up to just past the undisturbed run's end.
        std::thread::sleep(duration.mul_f64(1.1 * k as f64 / points as f64));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if out.exists() {
            // Finished before the kill: the delivery must be whole.
            let o = ehds_prep(&["inspect", out.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "kill point {k}: visible delivery fails inspect: {}",
                stderr(&o)
            );
        } else {
            assert!(
                !status.success(),
                "kill point {k}: run succeeded but left no delivery"
            );
            killed_before_commit += 1;
        }
        run_ok(&permit);
        for (f, bytes) in &reference {
            assert!(
                std::fs::read(out.join(f)).unwrap() == *bytes,
                "kill point {k}: {f} differs after rerun"
            );
        }
    }
    assert!(
        killed_before_commit >= points / 4,
        "only {killed_before_commit} kills landed inside a run"
    );
}

#[test]
fn a_second_run_on_the_same_output_is_refused_while_the_first_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("registry", tmp.path());
    std::fs::create_dir_all(tmp.path().join("out")).unwrap();
    // Hold the output's lock as a first run would.
    let lock = std::fs::File::create(tmp.path().join("out/.registry.lock")).unwrap();
    lock.lock().unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another run is writing this output"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("out/registry").exists());
    drop(lock);
    run_ok(&permit);

    // Two real runs started together: one may be refused, but never both, and the delivery is whole.
    std::fs::remove_dir_all(tmp.path().join("out/registry")).unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
            .args(["run", "--permit", permit.to_str().unwrap()])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success() || b.status.success());
    for o in [&a, &b] {
        assert!(
            o.status.success() || stderr(o).contains("another run is writing this output"),
            "{}",
            stderr(o)
        );
    }
    let o = ehds_prep(&["inspect", tmp.path().join("out/registry").to_str().unwrap()]);
    assert!(o.status.success());
}

/// Unmounts the test's tmpfs however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_no_staging_debris() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&disk)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    }
    let _unmount = Mounted(disk.clone());
    let permit = sample_permit("hospital", tmp.path());
    let text = std::fs::read_to_string(&permit).unwrap().replace(
        &format!("\"{}/out/hospital\"", tmp.path().display()),
        &format!("\"{}/hospital\"", disk.display()),
    );
    std::fs::write(&permit, text).unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write delivery"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).to_lowercase().contains("no space left"),
        "{}",
        stderr(&o)
    );
    let left: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "debris left on the full disk: {left:?}");
}

/// A second run started while a real first run is writing is refused with a clear message (exit 7),
/// and the first run completes unaffected: its delivery verifies.
#[test]
fn a_second_run_is_refused_while_a_real_first_run_writes_and_the_first_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = common::generated_stays_permit(tmp.path(), 150000, 1024);
    let first = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["run", "--permit", permit.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The staging folder appears only once the first run holds the lock.
    let staging = tmp.path().join(".out.staging");
    let started = std::time::Instant::now();
    while !staging.exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first run never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let second = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "the first run failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(second.status.code(), Some(7), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another run is writing this output"),
        "{}",
        stderr(&second)
    );
    let o = ehds_prep(&["inspect", tmp.path().join("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

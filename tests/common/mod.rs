//! Helpers shared by the integration tests: the binary, the repository, permits copied into a
//! temporary folder with absolute paths.
#![allow(dead_code)]

pub mod adult;
pub mod permit_text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn ehds_prep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Copies `configs/<holder>.toml` into `dir`, pointing its inputs at the repository's sample data and
/// its output at `dir/out/<holder>`; returns the copy's path.
pub fn sample_permit(holder: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(format!("configs/{holder}.toml"))).unwrap();
    let text = text
        .replace(
            "\"../sample-data/",
            &format!("\"{}/sample-data/", repo().display()),
        )
        .replace("\"../out/", &format!("\"{}/out/", dir.display()))
        .replace(
            "schema = \"",
            &format!("schema = \"{}/configs/", repo().display()),
        );
    let path = dir.join(format!("{holder}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn run_ok(permit: &Path) -> Output {
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    o
}

/// Writes a file readable by its owner only, as key files must be.
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A private copy of the demo key at `path`.
/// The bundled demo keys (the holders' linkage key, the CLK secret) and the CLK linkage schema,
/// where a copy of the sample layout (`dir/sample-data`, `dir/configs`) expects them.
pub fn demo_keys_to(dir: &Path) {
    for key in [
        "DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex",
        "DEMO-CLK-SECRET-DO-NOT-USE-FOR-REAL-DATA.hex",
    ] {
        let to = dir.join("sample-data").join(key);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        write_private(
            &to,
            &std::fs::read(repo().join("sample-data").join(key)).unwrap(),
        );
    }
    std::fs::create_dir_all(dir.join("configs")).unwrap();
    std::fs::copy(
        repo().join("configs/clk-schema.json"),
        dir.join("configs/clk-schema.json"),
    )
    .unwrap();
}

pub fn demo_key_to(path: &Path) {
    write_private(
        path,
        &std::fs::read(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex")).unwrap(),
    );
}

/// Every direct identifier of the sample extracts (NIRs as written and without spaces, names, phone
/// numbers, local ids) of at least 4 characters: none may ever appear in an output or a message.
pub fn input_identifiers() -> std::collections::HashSet<String> {
    use std::collections::HashSet;
    let data = repo().join("sample-data");
    let mut secrets: HashSet<String> = HashSet::new();
    for (file, sep, latin1, cols) in [
        (
            "hospital/patients.csv",
            ',',
            false,
            &["patient_id", "nir", "last_name", "first_name", "phone"][..],
        ),
        (
            "hospital/stays.csv",
            ',',
            false,
            &["stay_id", "patient_id", "nir"][..],
        ),
        (
            "insurer/pharmacy_claims.csv",
            ';',
            true,
            &["nir", "nom", "prenom"][..],
        ),
        (
            "registry/cancer_cases.csv",
            ',',
            false,
            &["case_id", "nir"][..],
        ),
    ] {
        let bytes = std::fs::read(data.join(file)).unwrap();
        let text: String = if latin1 {
            bytes.iter().map(|&b| b as char).collect()
        } else {
            String::from_utf8(bytes).unwrap()
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(sep).collect();
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| header.iter().position(|h| h == c).unwrap())
            .collect();
        for line in lines {
            let fields: Vec<&str> = line.split(sep).collect();
            for &i in &idx {
                let v = fields[i].trim_matches('"');
                if v.len() >= 4 {
                    secrets.insert(v.to_string());
                    secrets.insert(v.replace(' ', ""));
                }
            }
        }
    }
    secrets
}

/// Runs a permit and returns the run's peak resident memory in kB, read from the kernel's high-water
/// mark of the process (`VmHWM`) while it runs. (`getrusage` of children would also count the test
/// process's own peak: a spawned child inherits it until it executes the binary.)
///
/// The run's allocator hands freed pages back at once (`_RJEM_MALLOC_CONF` overrides the binary's
/// one-second decay), so that the peak is the engine's own memory: with the decay, how many freed
/// pages are still held at the peak depends on the machine's speed (the same 1M / 3M-row runs
/// measured 1.13 to 1.30 times the peak across machines, 1.03 without the decay).
pub fn run_measuring_peak_kb(permit: &Path) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["-q", "run", "--permit", permit.to_str().unwrap()])
        .env("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
        .spawn()
        .expect("the binary runs");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "run of {} failed", permit.display());
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A copy of `configs/<config>.toml` keeping only `dataset`, reading the generated extracts under
/// `data`, delivering to `dir/<out>` in batches of 65,536 rows; returns its path.
pub fn single_dataset_permit(
    config: &str,
    dataset: &str,
    dir: &Path,
    data: &Path,
    out: &str,
) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(format!("configs/{config}.toml"))).unwrap();
    let (head, rest) = text.split_at(text.find("[[datasets]]").unwrap());
    let kept: Vec<&str> = rest
        .split("[[datasets]]\n")
        .filter(|d| d.starts_with(&format!("name = \"{dataset}\"")))
        .collect();
    assert_eq!(kept.len(), 1, "dataset {dataset} in {config}.toml");
    let text = format!("{head}[[datasets]]\n{}", kept[0])
        .replace(
            &format!("dir = \"../out/{config}\""),
            &format!("dir = \"{}\"\nbatch_rows = 65536", dir.join(out).display()),
        )
        .replace(
            "\"../sample-data/DEMO-",
            &format!("\"{}/sample-data/DEMO-", repo().display()),
        )
        .replace("\"../sample-data/", &format!("\"{}/", data.display()))
        .replace(
            "schema = \"",
            &format!("schema = \"{}/configs/", repo().display()),
        );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Generated extracts of `people` people under `dir/data`, and a stays-only hospital permit over them
/// delivering to `dir/out` in batches of `batch_rows` rows; returns the permit's path.
pub fn generated_stays_permit(dir: &Path, people: usize, batch_rows: usize) -> PathBuf {
    let data = dir.join("data");
    let people = people.to_string();
    let o = ehds_prep(&[
        "generate",
        "--out",
        data.to_str().unwrap(),
        "--people",
        &people,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let permit = single_dataset_permit("hospital", "stays", dir, &data, "out");
    let text = std::fs::read_to_string(&permit)
        .unwrap()
        .replace("batch_rows = 65536", &format!("batch_rows = {batch_rows}"));
    std::fs::write(&permit, text).unwrap();
    permit
}

/// Runs an independent Python checker of `tests/independent` on a delivery folder; requires success
/// and returns the counts it prints.
pub fn independent_check(script: &str, out: &Path) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(repo().join("tests/independent").join(script))
        .arg(repo())
        .arg(out)
        .output()
        .expect("python3 runs (pyarrow is installed by .ci/run)");
    assert!(
        o.status.success(),
        "independent check {script} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The Python of a virtual environment of its own under the target folder, made with
/// `packages` the first time: for reference tools whose versions or dependencies must not touch
/// the system's Python (pyarrow 14, clkhash). Tests running at once wait for one another (a lock
/// file), and a venv counts as made only once its packages are in (a marker file): a venv half made
/// by an interrupted or concurrent test is made again, never used.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    std::fs::create_dir_all(&target).unwrap();
    let venv = target.join(name);
    let lock = std::fs::File::create(target.join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    let made = venv.join(".ehds-prep-packages");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&made).ok().as_deref() != Some(wanted.as_str()) {
        if venv.exists() {
            std::fs::remove_dir_all(&venv).unwrap();
        }
        let created = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(created.success(), "python3 -m venv {}", venv.display());
        let pip = std::process::Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .status()
            .unwrap();
        assert!(pip.success(), "pip install {packages:?}");
        std::fs::write(&made, wanted).unwrap();
    }
    venv.join("bin/python")
}

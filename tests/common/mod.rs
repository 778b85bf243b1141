//! Helpers shared by the integration tests: the binary, the repository, permits copied into a
//! temporary folder with absolute paths.
#![allow(dead_code)]

pub mod adult;

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
        .replace("\"../out/", &format!("\"{}/out/", dir.display()));
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

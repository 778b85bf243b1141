//! Any bytes as a hospital extract, through a whole run of a permit that reads every column type,
//! pseudonymises a NIR, shifts nothing and anonymises nothing: the run delivers or fails with an
//! error, never panics, and a failed run leaves no delivery behind.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const PERMIT: &str = r#"
[permit]
id = "FUZZ"
purpose = "fuzzing"
holder = "fuzz"
recipient = "fuzz"

[output]
dir = "out"
batch_rows = 7

[keys.k]
file = "key.hex"

[domains.d]
key = "k"

[[datasets]]
name = "rows"
person = "nir"

[datasets.source]
format = "csv"
files = ["input.csv"]

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "d"
on_invalid = "null"
on_missing = "null"

[[datasets.columns]]
name = "n"
type = "integer"
action = "keep"

[[datasets.columns]]
name = "x"
type = "float"
action = "keep"

[[datasets.columns]]
name = "day"
type = "date"
action = "generalise"
rule = "month"

[[datasets.columns]]
name = "at"
type = "datetime"
action = "keep"

[[datasets.columns]]
name = "flag"
type = "boolean"
action = "keep"

[[datasets.columns]]
name = "code"
type = "string"
action = "generalise"
rule = "prefix"
prefix = 2
"#;

/// A private folder with the permit and its key, made once per fuzzing process.
fn workspace() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ehds-prep-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("permit.toml"), PERMIT).unwrap();
        let key = dir.join("key.hex");
        std::fs::write(&key, "5f0c9a7e31d24b86a0e97c13f4d2b6a8195e7c3d0b4f82a6e1c9d7053b8f2a64").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = workspace();
    let mut input = b"nir,n,x,day,at,flag,code\n".to_vec();
    input.extend_from_slice(data);
    std::fs::write(dir.join("input.csv"), &input).unwrap();
    let plan = ehds_prep::load_plan(&dir.join("permit.toml")).expect("the fuzz permit is valid");
    if ehds_prep::engine::run(&plan).is_err() {
        assert!(
            !dir.join(".out.staging").exists(),
            "a failed run left its staging folder"
        );
    }
});

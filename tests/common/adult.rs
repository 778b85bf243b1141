//! ARX's `adult` benchmark (`../shared/data/adult`) as users load it: a permit naming the CSV and ARX's
//! hierarchy files. Shared by the oracle tests and the search benchmark.

use std::path::{Path, PathBuf};

pub const COLUMNS: [&str; 9] = [
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
];

pub fn dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/adult");
    if dir.join("adult.csv").exists() {
        Some(dir.canonicalize().unwrap())
    } else {
        eprintln!("skipped: ../shared/data/adult is not present");
        None
    }
}

/// A permit over adult: every column a quasi-identifier with ARX's hierarchy, except `sensitive`
/// (kept); `pins` fixes levels; `privacy` is the body of `[datasets.privacy]`.
pub fn permit(
    dir: &Path,
    data: &Path,
    sensitive: Option<&str>,
    pins: Option<&[u8]>,
    privacy: &str,
) -> PathBuf {
    let mut text = format!(
        "[permit]\nid = \"arx-adult\"\npurpose = \"oracle\"\nholder = \"UCI\"\nrecipient = \"tests\"\n\n\
         [output]\ndir = \"out\"\n\n[[datasets]]\nname = \"adult\"\n\n[datasets.source]\n\
         format = \"csv\"\nfiles = [\"{}\"]\ndelimiter = \";\"\n\n",
        data.join("adult.csv").display()
    );
    let mut qi = 0;
    for c in COLUMNS {
        text += &format!("[[datasets.columns]]\nname = \"{c}\"\ntype = \"string\"\n");
        if Some(c) == sensitive {
            text += "action = \"keep\"\n\n";
            continue;
        }
        text += &format!(
            "action = \"generalise\"\nhierarchy = \"{}\"\n",
            data.join(format!("adult_hierarchy_{c}.csv")).display()
        );
        if let Some(p) = pins {
            text += &format!("level = {}\n", p[qi]);
        }
        qi += 1;
        text += "\n";
    }
    text += &format!("[datasets.privacy]\n{privacy}\n");
    let path = dir.join("adult.toml");
    std::fs::write(&path, text).unwrap();
    path
}

//! ARX's `adult` benchmark (`../shared/data/adult`) as users load it: a permit naming the CSV and ARX's
//! hierarchy files. Shared by the oracle tests and the search benchmark.

use std::path::{Path, PathBuf};

use super::permit_text::{self, column, dataset, kept};

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
    let file = |name: &str| data.join(name).display().to_string();
    let mut adult = dataset("adult", &[&file("adult.csv")]).source("delimiter = \";\"");
    let mut qi = 0;
    for c in COLUMNS {
        if Some(c) == sensitive {
            adult = adult.column(kept(c, "string"));
            continue;
        }
        let mut generalised = column(c, "string", "generalise")
            .set("hierarchy", &file(&format!("adult_hierarchy_{c}.csv")));
        if let Some(p) = pins {
            generalised = generalised.raw("level", &p[qi].to_string());
        }
        qi += 1;
        adult = adult.column(generalised);
    }
    permit_text::permit("arx-adult")
        .purpose("oracle")
        .holder("UCI")
        .recipient("tests")
        .without_keys()
        .dataset(adult.privacy(privacy))
        .write(&dir.join("adult.toml"))
}

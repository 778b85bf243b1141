//! A delivery's manifest (`manifest.json`): every file's checksum, size, rows and schema, what each
//! column became, the domains and the inputs; the footer keys every data file carries; and
//! `inspect`'s verification of a delivery against its manifest.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;

pub const MANIFEST: &str = "manifest.json";
/// The run report, for machines (`report.json`) and people (`report.html`).
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_HTML: &str = "report.html";
/// A linked delivery's linkage report (masked) and its summary in words.
pub const LINKAGE_REPORT: &str = "linkage.json";
pub const LINKAGE_SUMMARY: &str = "linkage.txt";
/// Every file a delivery holds besides its datasets' Parquet files.
const COMPANION_FILES: [&str; 5] = [
    MANIFEST,
    REPORT_JSON,
    REPORT_HTML,
    LINKAGE_REPORT,
    LINKAGE_SUMMARY,
];
pub const MANIFEST_FORMAT: &str = "ehds-prep delivery manifest v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub engine_version: String,
    pub permit: PermitRecord,
    pub pseudonyms: PseudonymRecord,
    pub domains: Vec<DomainRecord>,
    /// The date-shift domain and range, when a delivered column is shifted: deliveries linked
    /// together must share them, or intervals across holders are wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_shift: Option<DateShiftRecord>,
    /// Why persons a dataset suppressed were kept in the others, when the permit keeps them
    /// (`output.keep_persons_suppressed_elsewhere`); absent, they left every dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persons_suppressed_elsewhere_kept: Option<String>,
    pub datasets: Vec<DatasetRecord>,
    /// Every file the run read (sources, opt-out list, hierarchies, dictionaries): size,
    /// modification time and SHA-256 of the bytes read.
    #[serde(default)]
    pub inputs: Vec<crate::source::inputs::InputRecord>,
    /// The database the PostgreSQL sources were read from: its server and version, the snapshot
    /// every read saw, and a SHA-256 of each statement that read a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::source::postgres::DatabaseRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PermitRecord {
    pub id: String,
    pub purpose: String,
    pub holder: String,
    pub recipient: String,
    /// SHA-256 of the permit file.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PseudonymRecord {
    pub version: String,
    pub encoding: String,
    pub bits: u16,
    /// How identifiers were normalised before they were pseudonymised
    /// ([`crate::kernels::identifier::CANONICAL_FORM`]); deliveries made before it was recorded are `v1`.
    #[serde(default = "first_canonical_form")]
    pub canonical_form: String,
}

fn first_canonical_form() -> String {
    "v1".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainRecord {
    pub name: String,
    pub context: String,
    pub key_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DateShiftRecord {
    /// The domain whose key draws each person's shift.
    pub domain: String,
    pub context: String,
    pub key_fingerprint: String,
    pub min_days: i32,
    pub max_days: i32,
    /// How many identifier parts a person's shift is drawn from: 1 for a person named by one
    /// column (or by the first part of a composite, `keyed_on = "first_part"`), else the
    /// composite's. Holders whose shifts are drawn from different parts shift one person
    /// differently.
    #[serde(default = "one_part")]
    pub key_parts: usize,
}

fn one_part() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetRecord {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub schema: Vec<FieldRecord>,
    /// How the rows are ordered ([`super::order`]): never as in the source.
    #[serde(default)]
    pub row_order: String,
    /// The privacy models the dataset was anonymised under, and the levels chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyRecord>,
    /// The set-valued attribute's k^m-anonymity, and how its codes were released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_valued: Option<crate::privacy::set_valued::Summary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrivacyRecord {
    /// The models in words.
    pub models: String,
    pub k: Option<u32>,
    pub l: Option<f64>,
    pub l_diversity: Option<String>,
    /// c of recursive (c,ℓ)-diversity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    /// k of k-map (enforced as the k' its estimate derives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_map: Option<u32>,
    /// The bound on the average re-identification risk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_risk: Option<f64>,
    /// The bound on the share of sample-unique rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_uniqueness: Option<f64>,
    /// (δmin, δmax) of δ-presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_presence: Option<(f64, f64)>,
    /// With a research subset: its rows, and the dataset's (the population).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub research_subset: Option<SubsetRecord>,
    /// The bound on the estimated share of population uniques, with the population's size and
    /// the estimator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population_uniqueness: Option<PopulationUniquenessRecord>,
    pub t: Option<f64>,
    pub t_closeness: Option<String>,
    pub sensitive: Option<String>,
    /// The column whose distinct values count as persons (rows are counted without one).
    pub persons_counted_by: Option<String>,
    pub suppression_limit: f64,
    pub rows_suppressed: u64,
    pub suppressed_rows_are: String,
    pub metric: String,
    pub levels: Vec<LevelRecord>,
    /// What the guarantee covers across the delivery's tables, and the delivered date and code
    /// columns it does not.
    #[serde(default)]
    pub coverage: crate::privacy::anonymise::Coverage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubsetRecord {
    pub subset_rows: u64,
    pub population_rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PopulationUniquenessRecord {
    pub threshold: f64,
    pub population: u64,
    pub estimator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelRecord {
    pub column: String,
    pub level: u8,
    pub meaning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: String,
    /// What was done to produce this column.
    pub transformation: String,
    /// For a pseudonymised column, its domain; for a tokenised one, `[tokens]`; for a CLK, `[clk]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// How the values read where the type alone does not say (a year, a month, a quasi-identifier's
    /// labels and its `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Whether the column's dates are shifted per person (see the manifest's `date_shift`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shifted: bool,
}

/// The `domain` a tokenised column records.
pub const TOKEN_DOMAIN: &str = "[tokens]";

/// The `domain` a CLK column records: encodings of personal data under the holders' CLK secret.
pub const CLK_DOMAIN: &str = "[clk]";

/// Footer keys every delivered Parquet file carries.
pub mod footer {
    pub const PERMIT_ID: &str = "ehds.permit_id";
    pub const PERMIT_SHA256: &str = "ehds.permit_sha256";
    pub const ENGINE_VERSION: &str = "ehds.engine_version";
    pub const PSEUDONYM_VERSION: &str = "ehds.pseudonym_version";
    pub const DOMAINS: &str = "ehds.domains";
    pub const DATASET: &str = "ehds.dataset";
}

/// SHA-256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(&hasher.finalize()), bytes))
}

/// The permit id and holder of the delivery in `dir`, read from its manifest's format line and
/// permit alone: a delivery written by another version of the engine (whose records hold other
/// fields) is still recognised as one, to be replaced by a rerun. None when `dir` holds no
/// ehds-prep manifest.
pub fn delivered_permit(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    let format = manifest["format"].as_str()?;
    if !format.starts_with("ehds-prep delivery manifest") {
        return None;
    }
    let permit = &manifest["permit"];
    Some((
        permit["id"].as_str()?.to_string(),
        permit["holder"].as_str()?.to_string(),
    ))
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::verify(&path, format!("cannot read manifest: {e}")))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::verify(&path, format!("not a valid manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(Error::verify(
            &path,
            format!("unknown manifest format `{}`", manifest.format),
        ));
    }
    Ok(manifest)
}

/// Checks every file of a delivery against its manifest: checksum, size, row count and footer
/// metadata. A manifest that names a file outside the folder, and any file or folder in the
/// delivery that is neither a listed dataset nor one of its reports, are errors too: what the
/// recipient receives is exactly what the manifest accounts for.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(dir)?;
    let domains_json = serde_json::to_string(&manifest.domains).expect("serialisable");
    // Only files inside the delivery are opened.
    for d in &manifest.datasets {
        let plain = {
            let mut parts = Path::new(&d.file).components();
            matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none()
        };
        if !plain || d.file.starts_with('.') || COMPANION_FILES.contains(&d.file.as_str()) {
            return Err(Error::verify(
                dir.join(MANIFEST),
                format!(
                    "dataset `{}` names a file outside the delivery or not a data file",
                    d.name
                ),
            ));
        }
    }
    // Files are hashed at once (the checks below still go in the manifest's order).
    let hashed: Vec<std::io::Result<(String, u64)>> = manifest
        .datasets
        .par_iter()
        .map(|d| sha256_file(&dir.join(&d.file)))
        .collect();
    for (d, hashed) in manifest.datasets.iter().zip(hashed) {
        let path = dir.join(&d.file);
        let fail = |m: String| Error::verify(&path, m);
        let (sha, bytes) = hashed.map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes != d.bytes {
            return Err(fail(format!(
                "size is {bytes} bytes; the manifest says {}",
                d.bytes
            )));
        }
        if sha != d.sha256 {
            return Err(fail(
                "SHA-256 differs from the manifest: the file was altered or damaged".into(),
            ));
        }
        let footer = read_footer(&path)?;
        if footer.rows != d.rows {
            return Err(fail(format!(
                "footer says {} rows; the manifest says {}",
                footer.rows, d.rows
            )));
        }
        let expected = [
            (footer::PERMIT_ID, manifest.permit.id.as_str()),
            (footer::PERMIT_SHA256, &manifest.permit.sha256),
            (footer::ENGINE_VERSION, &manifest.engine_version),
            (footer::PSEUDONYM_VERSION, &manifest.pseudonyms.version),
            (footer::DOMAINS, &domains_json),
            (footer::DATASET, &d.name),
        ];
        for (key, want) in expected {
            let got = footer
                .metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str());
            if got != Some(want) {
                return Err(fail(format!(
                    "footer key `{key}` does not match the manifest"
                )));
            }
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::verify(dir, e.to_string()))? {
        let name = entry
            .map_err(|e| Error::verify(dir, e.to_string()))?
            .file_name()
            .to_string_lossy()
            .to_string();
        let listed = manifest.datasets.iter().any(|d| d.file == name)
            || COMPANION_FILES.contains(&name.as_str());
        if !listed {
            return Err(Error::verify(
                dir.join(&name),
                "is in the delivery but not in its manifest: a delivery holds its datasets and \
                 reports only",
            ));
        }
    }
    Ok(manifest)
}

pub struct Footer {
    pub rows: u64,
    pub metadata: Vec<(String, String)>,
}

/// Reads a Parquet footer with arrow-rs's reader, independent of the polars writer that produced it.
pub fn read_footer(path: &Path) -> Result<Footer> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).map_err(|e| Error::verify(path, format!("cannot open: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::verify(path, format!("unreadable Parquet footer: {e}")))?;
    let meta = reader.metadata().file_metadata();
    let metadata = meta
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Footer {
        rows: meta.num_rows() as u64,
        metadata,
    })
}

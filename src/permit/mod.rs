//! The permit file: a typed model of what one data permit allows, parsed from TOML and validated.
//!
//! Everything a run does comes from here: which sources to read with which explicit schema, which rows
//! belong to the cohort, what happens to each column, which keys and pseudonymisation domains to use,
//! and where the delivery goes. Columns the permit does not name are never read into a delivery.
//! Relative paths are relative to the permit file's folder. Keys are named by source (file or
//! environment variable), never written in the permit.

pub mod derivation;
mod model;
mod validate;

pub use model::*;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;

/// A parsed and validated permit, with its location and a hash of its text.
#[derive(Debug, Clone)]
pub struct Permit {
    pub spec: PermitSpec,
    pub path: PathBuf,
    /// SHA-256 of the permit file's bytes, recorded in every delivery.
    pub sha256: String,
}

/// The sections a dataset has at most one of, written `[datasets.X]`: written `[[datasets.X]]`
/// (an array of tables), serde's message speaks of a map and a type; say what to write instead.
fn one_table_hint(at: &str) -> String {
    let single = ["privacy", "source", "catalogue", "person_via"];
    let Some(section) = at
        .rsplit_once('.')
        .and_then(|(_, last)| last.split_once('['))
        .map(|(name, _)| name)
        .filter(|name| single.contains(name))
    else {
        return String::new();
    };
    format!(
        "; a dataset has one `[datasets.{section}]` table: write it with single brackets, not \
         `[[datasets.{section}]]`"
    )
}

impl Permit {
    pub fn load(path: &Path) -> Result<Permit> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Permit {
            file: path.into(),
            at: "file".into(),
            message: format!("cannot read permit: {e}"),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Permit> {
        let err = |at: String, message: String| Error::Permit {
            file: path.into(),
            at,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(position(text, &e), e.message().into()))?;
        let spec: PermitSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            let place = if inner.span().is_some() {
                format!("{at} ({})", position(text, &inner))
            } else {
                at.clone()
            };
            err(place, format!("{}{}", inner.message(), one_table_hint(&at)))
        })?;
        let permit = Permit {
            spec,
            path: path.into(),
            sha256: hex::encode(&Sha256::digest(text.as_bytes())),
        };
        permit.validate()?;
        Ok(permit)
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir().join(p)
        }
    }

    pub fn output_dir(&self) -> PathBuf {
        self.resolve(&self.spec.output.dir)
    }

    /// Every file or folder the permit has a run read, with the key path that names it: the
    /// permit itself, key files, the opt-out list, sources, hierarchies, dictionaries and the
    /// deliveries a linking permit links. (A linked person table is made by the run.)
    pub fn inputs(&self) -> Vec<(String, PathBuf)> {
        let s = &self.spec;
        let mut out = vec![("the permit".to_string(), self.path.clone())];
        for (name, k) in &s.keys {
            if let Some(file) = &k.file {
                out.push((format!("keys.{name}.file"), self.resolve(file)));
            }
        }
        if let Some(o) = &s.opt_out {
            out.push(("opt_out.file".into(), self.resolve(&o.file)));
        }
        for (di, d) in s.datasets.iter().enumerate() {
            if d.source.format != SourceFormat::Linked {
                for (fi, f) in d.source.files.iter().enumerate() {
                    out.push((
                        format!("datasets[{di}].source.files[{fi}]"),
                        self.resolve(f),
                    ));
                }
            }
            for (field, path) in [
                ("connection_file", &d.source.connection_file),
                ("sslrootcert", &d.source.sslrootcert),
            ] {
                if let Some(path) = path {
                    out.push((format!("datasets[{di}].source.{field}"), self.resolve(path)));
                }
            }
            for (xi, x) in d.clks.iter().enumerate() {
                out.push((
                    format!("datasets[{di}].clk[{xi}].schema"),
                    self.resolve(&x.schema),
                ));
            }
            for (ci, c) in d.columns.iter().enumerate() {
                for (field, path) in [("hierarchy", &c.hierarchy), ("dictionary", &c.dictionary)] {
                    if let Some(path) = path {
                        out.push((
                            format!("datasets[{di}].columns[{ci}].{field}"),
                            self.resolve(path),
                        ));
                    }
                }
            }
            if let Some(h) = d
                .privacy
                .as_ref()
                .and_then(|p| p.sensitive_hierarchy.as_ref())
            {
                out.push((
                    format!("datasets[{di}].privacy.sensitive_hierarchy"),
                    self.resolve(h),
                ));
            }
        }
        if let Some(l) = &s.linkage {
            for (si, source) in l.sources.iter().enumerate() {
                out.push((
                    format!("linkage.sources[{si}].delivery"),
                    self.resolve(&source.delivery),
                ));
            }
        }
        out
    }

    /// Loads the key the permit names `name` from its file or environment variable.
    pub fn load_key(&self, name: &str) -> Result<crate::kernels::keys::SecretKey> {
        use crate::kernels::keys::SecretKey;
        let source = &self.spec.keys[name];
        match (&source.file, &source.env) {
            (Some(file), None) => {
                SecretKey::from_private_file(&self.resolve(file), source.allow_readable_by_others)
            }
            (None, Some(var)) => SecretKey::from_env(var),
            _ => unreachable!("validated: exactly one key source"),
        }
    }

    /// The associated data bound into reversible tokens: `[tokens] context`, or the permit id.
    pub fn token_context(&self) -> Option<String> {
        let t = self.spec.tokens.as_ref()?;
        Some(
            t.context
                .clone()
                .unwrap_or_else(|| self.spec.permit.id.clone()),
        )
    }

    /// The HKDF context of a domain.
    pub fn domain_context(&self, name: &str) -> String {
        let d = &self.spec.domains[name];
        d.context
            .clone()
            .unwrap_or_else(|| format!("{}/{name}", self.spec.permit.id))
    }
}

/// "line L, column C" of a TOML error's span.
fn position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}")
        }
        None => "document".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permit naming `context` for its domain (and for its tokens).
    fn with_context(context: &str) -> Result<Permit> {
        let text = format!(
            r#"
[permit]
id = "FR-2029-0042"
purpose = "p"
holder = "h"
recipient = "r"
[output]
dir = "out"
[keys.k]
file = "k.hex"
[domains.d]
key = "k"
context = {context:?}
[tokens]
key = "k"
context = {context:?}
[[datasets]]
name = "t"
[datasets.source]
format = "csv"
files = ["t.csv"]
[[datasets.columns]]
name = "id"
type = "string"
action = "pseudonymise"
domain = "d"
"#
        );
        Permit::parse(&text, Path::new("permit.toml"))
    }

    /// Generated contexts: exactly those that start with the permit's id and a slash, and go on,
    /// are accepted; another permit's context, a prefix of the id or the id alone never are.
    #[test]
    fn domains_and_tokens_belong_to_their_permit() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(3);
        let pieces = [
            "FR-2029-0042",
            "FR-2029-0043",
            "FR-2029-004",
            "FR-2029-00421",
            "/",
            "linkage",
            "researcher",
            "",
            " ",
            "fr-2029-0042",
            "é",
        ];
        for _ in 0..500 {
            let n = rng.random_range(1..5);
            let context: String = (0..n)
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let own = context
                .strip_prefix("FR-2029-0042/")
                .is_some_and(|rest| !rest.is_empty());
            match with_context(&context) {
                Ok(_) => assert!(own, "{context:?} accepted"),
                Err(e) => {
                    assert!(!own, "{context:?} refused: {e}");
                    assert!(
                        e.to_string().contains("must start with this permit's id"),
                        "{e}"
                    );
                }
            }
        }
    }
}

//! Permits for tests, built from parts instead of written out in full: a header with one key
//! (`k`, file `key.hex`) and one domain (`d`) unless the test names its own, then datasets of
//! columns. `text()` gives the TOML, `write()` puts it in a file.

use std::fmt::Write;
use std::path::{Path, PathBuf};

pub struct PermitText {
    id: String,
    purpose: String,
    holder: String,
    recipient: String,
    output: Vec<String>,
    /// `[keys.<name>]` with its one line (`file = …` or `env = …`); None for the default key.
    keys: Option<Vec<(String, String)>>,
    /// `[domains.<name>]` with its lines; None for the default domain `d` of key `k`.
    domains: Option<Vec<(String, String)>>,
    sections: Vec<String>,
    datasets: Vec<DatasetText>,
}

/// A permit `id` for purpose "test" from holder "h" to recipient "r", delivering to `out`.
pub fn permit(id: &str) -> PermitText {
    PermitText {
        id: id.into(),
        purpose: "test".into(),
        holder: "h".into(),
        recipient: "r".into(),
        output: vec!["dir = \"out\"".into()],
        keys: None,
        domains: None,
        sections: Vec::new(),
        datasets: Vec::new(),
    }
}

impl PermitText {
    pub fn purpose(mut self, purpose: &str) -> Self {
        self.purpose = purpose.into();
        self
    }

    pub fn holder(mut self, holder: &str) -> Self {
        self.holder = holder.into();
        self
    }

    pub fn recipient(mut self, recipient: &str) -> Self {
        self.recipient = recipient.into();
        self
    }

    /// The delivery folder.
    pub fn output(mut self, dir: &str) -> Self {
        self.output[0] = format!("dir = {}", quoted(dir));
        self
    }

    /// Another line of `[output]` (`batch_rows = 2`…).
    pub fn output_option(mut self, line: &str) -> Self {
        self.output.push(line.into());
        self
    }

    /// A key read from a file; the first key named replaces the default one.
    pub fn key_file(self, name: &str, file: &str) -> Self {
        self.key(name, format!("file = {}", quoted(file)))
    }

    /// A key read from an environment variable.
    pub fn key_env(self, name: &str, var: &str) -> Self {
        self.key(name, format!("env = {}", quoted(var)))
    }

    fn key(mut self, name: &str, line: String) -> Self {
        self.keys
            .get_or_insert_with(Vec::new)
            .push((name.into(), line));
        self
    }

    /// No key and no domain: a permit that only anonymises.
    pub fn without_keys(mut self) -> Self {
        self.keys = Some(Vec::new());
        self.domains = Some(Vec::new());
        self
    }

    /// A domain of `key`, with more lines (`context = …`) if any; the first replaces the default.
    pub fn domain(mut self, name: &str, key: &str, more: &str) -> Self {
        let mut lines = format!("key = {}", quoted(key));
        if !more.is_empty() {
            lines = format!("{lines}\n{more}");
        }
        self.domains
            .get_or_insert_with(Vec::new)
            .push((name.into(), lines));
        self
    }

    /// A section written as it is (`[date_shift]`, `[opt_out]`, `[linkage]`…), after the domains.
    pub fn section(mut self, toml: &str) -> Self {
        self.sections.push(toml.trim().into());
        self
    }

    pub fn dataset(mut self, d: DatasetText) -> Self {
        self.datasets.push(d);
        self
    }

    pub fn text(&self) -> String {
        let mut t = String::new();
        writeln!(
            t,
            "[permit]\nid = {}\npurpose = {}\nholder = {}\nrecipient = {}\n\n[output]\n{}\n",
            quoted(&self.id),
            quoted(&self.purpose),
            quoted(&self.holder),
            quoted(&self.recipient),
            self.output.join("\n")
        )
        .unwrap();
        let default_key = [("k".to_string(), "file = \"key.hex\"".to_string())];
        for (name, line) in self.keys.as_deref().unwrap_or(&default_key) {
            writeln!(t, "[keys.{name}]\n{line}\n").unwrap();
        }
        let default_domain = [("d".to_string(), "key = \"k\"".to_string())];
        for (name, lines) in self.domains.as_deref().unwrap_or(&default_domain) {
            writeln!(t, "[domains.{name}]\n{lines}\n").unwrap();
        }
        for s in &self.sections {
            writeln!(t, "{s}\n").unwrap();
        }
        for d in &self.datasets {
            t += &d.text();
        }
        t
    }

    /// Writes the text at `path` and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.text()).unwrap();
        path.to_path_buf()
    }
}

pub struct DatasetText {
    name: String,
    person: Option<String>,
    options: Vec<String>,
    source: Vec<String>,
    columns: Vec<ColumnText>,
    privacy: Option<String>,
    tail: Vec<String>,
}

/// A dataset `name` read from CSV files `files`.
pub fn dataset(name: &str, files: &[&str]) -> DatasetText {
    let files: Vec<String> = files.iter().map(|f| quoted(f)).collect();
    DatasetText {
        name: name.into(),
        person: None,
        options: Vec::new(),
        source: vec![
            "format = \"csv\"".into(),
            format!("files = [{}]", files.join(", ")),
        ],
        columns: Vec::new(),
        privacy: None,
        tail: Vec::new(),
    }
}

impl DatasetText {
    pub fn person(mut self, column: &str) -> Self {
        self.person = Some(column.into());
        self
    }

    /// Another key of the dataset itself (`allow_empty = "…"`).
    pub fn option(mut self, line: &str) -> Self {
        self.options.push(line.into());
        self
    }

    /// Reads Parquet files instead of CSV.
    pub fn parquet(mut self) -> Self {
        self.source[0] = "format = \"parquet\"".into();
        self
    }

    /// Reads the person table of `link` (no files).
    pub fn linked(mut self) -> Self {
        self.source = vec!["format = \"linked\"".into()];
        self
    }

    /// Reads a PostgreSQL database (no files): its connection, query or table as `source` lines.
    pub fn postgres(mut self) -> Self {
        self.source = vec!["format = \"postgres\"".into()];
        self
    }

    /// Another line of `[datasets.source]` (`delimiter = ";"`…).
    pub fn source(mut self, line: &str) -> Self {
        self.source.push(line.into());
        self
    }

    pub fn column(mut self, c: ColumnText) -> Self {
        self.columns.push(c);
        self
    }

    /// The body of `[datasets.privacy]`.
    pub fn privacy(mut self, body: &str) -> Self {
        self.privacy = Some(body.trim().into());
        self
    }

    /// Tables of the dataset written as they are (`[[datasets.cohort]]`, `[[datasets.composites]]`…).
    pub fn tail(mut self, toml: &str) -> Self {
        self.tail.push(toml.trim().into());
        self
    }

    fn text(&self) -> String {
        let mut t = format!("[[datasets]]\nname = {}\n", quoted(&self.name));
        if let Some(p) = &self.person {
            writeln!(t, "person = {}", quoted(p)).unwrap();
        }
        for o in &self.options {
            writeln!(t, "{o}").unwrap();
        }
        writeln!(t, "\n[datasets.source]\n{}\n", self.source.join("\n")).unwrap();
        for c in &self.columns {
            writeln!(t, "[[datasets.columns]]\n{}\n", c.lines.join("\n")).unwrap();
        }
        if let Some(p) = &self.privacy {
            writeln!(t, "[datasets.privacy]\n{p}\n").unwrap();
        }
        for x in &self.tail {
            writeln!(t, "{x}\n").unwrap();
        }
        t
    }
}

pub struct ColumnText {
    lines: Vec<String>,
}

/// A column `name` of type `kind` with action `action`.
pub fn column(name: &str, kind: &str, action: &str) -> ColumnText {
    ColumnText {
        lines: vec![
            format!("name = {}", quoted(name)),
            format!("type = {}", quoted(kind)),
            format!("action = {}", quoted(action)),
        ],
    }
}

/// A column delivered as it is.
pub fn kept(name: &str, kind: &str) -> ColumnText {
    column(name, kind, "keep")
}

/// A NIR column `name` pseudonymised in `domain`.
pub fn nir(name: &str, domain: &str) -> ColumnText {
    column(name, "string", "pseudonymise")
        .set("identifier", "nir")
        .set("domain", domain)
}

impl ColumnText {
    /// An option whose value is a string.
    pub fn set(self, key: &str, value: &str) -> Self {
        self.raw(key, &quoted(value))
    }

    /// An option whose value is written as TOML (`2`, `["*"]`, `true`).
    pub fn raw(mut self, key: &str, toml: &str) -> Self {
        self.lines.push(format!("{key} = {toml}"));
        self
    }

    /// Options written as TOML lines (`levels = ["*"]\nlevel = 0`).
    pub fn lines(mut self, toml: &str) -> Self {
        self.lines.extend(toml.lines().map(String::from));
        self
    }
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        match c {
            '"' => q += "\\\"",
            '\\' => q += "\\\\",
            '\n' => q += "\\n",
            '\t' => q += "\\t",
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

//! PostgreSQL sources against a real server: the throwaway cluster `scripts/test.sh` starts
//! (`scripts/postgres.sh`), reached by the connection string in `EHDS_TEST_PG` with a password,
//! over TLS verified with the cluster's own certificate (`EHDS_TEST_PG_CA`).
//!
//! The sample extracts are loaded by PostgreSQL itself (`COPY … FROM` into text columns, then cast
//! by SQL into typed tables), not by the engine, so that a delivery read from the database and the
//! same permit's delivery read from CSV are two independent paths to compare.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::permit_text::{self, column, dataset};
use common::{sample_permit, stderr};

/// The variable the test permits name (`connection_env`); each run gets its database's string.
const CONNECTION_VAR: &str = "EHDS_PG_CONNECTION";

fn server() -> String {
    std::env::var("EHDS_TEST_PG").expect(
        "EHDS_TEST_PG is not set: run the tests with scripts/test.sh, which starts a throwaway \
         PostgreSQL server",
    )
}

fn certificate() -> PathBuf {
    std::env::var("EHDS_TEST_PG_CA")
        .expect("EHDS_TEST_PG_CA is not set: run the tests with scripts/test.sh")
        .into()
}

fn password() -> String {
    server()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("password="))
        .expect("the test server's string has a password")
        .to_string()
}

fn client(connection: &str) -> postgres::Client {
    postgres::Client::connect(connection, postgres::NoTls).expect("the test server answers")
}

/// A new, empty database of the test server; returns its connection string.
fn fresh_database(name: &str) -> String {
    let mut admin = client(&server());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    server().replace("dbname=postgres", &format!("dbname={name}"))
}

/// A new database holding a table `visits (patient text)` of one row; returns its connection
/// string.
fn one_visit_database(name: &str) -> String {
    let connection = fresh_database(name);
    client(&connection)
        .batch_execute("CREATE TABLE visits (patient text); INSERT INTO visits VALUES ('P-1')")
        .unwrap();
    connection
}

/// Runs the binary with the database's connection string in [`CONNECTION_VAR`].
fn run(args: &[&str], connection: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(args)
        .env(CONNECTION_VAR, connection)
        .output()
        .expect("the binary runs")
}

/// The PostgreSQL type a declared column is loaded as: text for text and partial dates (parsed by
/// the engine as a CSV field is), numeric for floats (converted by the server).
fn pg_type(declared: &str) -> &'static str {
    match declared {
        "string" | "text" | "year" | "year_month" => "text",
        "integer" => "bigint",
        "float" => "numeric",
        "date" => "date",
        "datetime" => "timestamp",
        "boolean" => "boolean",
        other => panic!("no PostgreSQL type for declared type {other}"),
    }
}

/// PostgreSQL's `to_date` pattern of a chrono date format of the sample permits.
fn pg_date_format(chrono: &str) -> &'static str {
    match chrono {
        "%Y-%m-%d" => "YYYY-MM-DD",
        "%d/%m/%Y" => "DD/MM/YYYY",
        "%Y%m%d" => "YYYYMMDD",
        other => panic!("add the to_date pattern of {other}"),
    }
}

/// Loads every CSV source of the permit at `permit` into a table of the dataset's name in the
/// database at `connection`, typed as its columns are declared, and rewrites the permit to read
/// those tables; returns the rewritten permit's path.
fn load_into_postgres(permit: &Path, connection: &str, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(permit).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    let mut db = client(connection);
    db.batch_execute("SET TimeZone = 'UTC'").unwrap();
    let datasets = doc["datasets"].as_array_mut().unwrap();
    for d in datasets.iter_mut() {
        let name = d["name"].as_str().unwrap().to_string();
        let source = d["source"].as_table().unwrap().clone();
        if source["format"].as_str() != Some("csv") {
            continue;
        }
        let get = |k: &str, default: &str| {
            source
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or(default)
                .to_string()
        };
        let delimiter = get("delimiter", ",");
        let latin1 = get("encoding", "utf-8") != "utf-8";
        let date_format = get("date_format", "%Y-%m-%d");
        let decimal = get("decimal", ".");
        let nulls: Vec<String> = source
            .get("null_values")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_else(|| vec![String::new()]);
        let files = source["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "one file per sample dataset");
        let file = PathBuf::from(files[0].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        let header_line = bytes.split(|&b| b == b'\n').next().unwrap();
        let header: Vec<String> = String::from_utf8_lossy(header_line)
            .trim_end_matches('\r')
            .split(delimiter.as_str())
            .map(|h| h.trim_matches('"').to_string())
            .collect();
        let staging = format!("{name}_text");
        db.batch_execute(&format!(
            "CREATE TABLE \"{staging}\" ({})",
            header
                .iter()
                .map(|h| format!("\"{h}\" text"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .unwrap();
        let copy = format!(
            "COPY \"{staging}\" FROM STDIN (FORMAT csv, HEADER true, DELIMITER '{delimiter}', \
             ENCODING '{}')",
            if latin1 { "LATIN1" } else { "UTF8" }
        );
        let mut writer = db.copy_in(copy.as_str()).unwrap();
        std::io::Write::write_all(&mut writer, &bytes).unwrap();
        writer.finish().unwrap();
        // The typed table: each declared column read from the source, cast by SQL; the texts the
        // permit reads as missing become NULL.
        let mut columns = Vec::new();
        let mut selects = Vec::new();
        for c in d["columns"].as_array().unwrap() {
            if c.get("profile").is_some() {
                continue;
            }
            let column = c["name"].as_str().unwrap();
            let declared = c["type"].as_str().unwrap();
            let mut missing: Vec<String> = nulls.clone();
            if let Some(own) = c.get("null_values").and_then(|v| v.as_array()) {
                missing.extend(own.iter().map(|v| v.as_str().unwrap().to_string()));
            }
            let raw = format!("\"{column}\"");
            let missing_list = missing
                .iter()
                .map(|m| format!("'{}'", m.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            let value = format!("CASE WHEN {raw} IN ({missing_list}) THEN NULL ELSE {raw} END");
            let format = c
                .get("format")
                .and_then(|v| v.as_str())
                .unwrap_or(&date_format);
            let cast = match pg_type(declared) {
                "date" => format!("to_date({value}, '{}')", pg_date_format(format)),
                "timestamp" => {
                    format!("to_timestamp({value}, 'YYYY-MM-DD HH24:MI:SS')::timestamp")
                }
                "numeric" => format!("replace({value}, '{decimal}', '.')::numeric"),
                t => format!("({value})::{t}"),
            };
            columns.push(format!("\"{column}\" {}", pg_type(declared)));
            selects.push(cast);
        }
        db.batch_execute(&format!(
            "CREATE TABLE \"{name}\" ({}); INSERT INTO \"{name}\" SELECT {} FROM \"{staging}\"; \
             DROP TABLE \"{staging}\"",
            columns.join(", "),
            selects.join(", ")
        ))
        .unwrap();
        let mut pg_source = toml::Table::new();
        pg_source.insert("format".into(), "postgres".into());
        pg_source.insert("connection_env".into(), CONNECTION_VAR.into());
        pg_source.insert("table".into(), format!("public.{name}").into());
        pg_source.insert("sslmode".into(), "verify-full".into());
        pg_source.insert(
            "sslrootcert".into(),
            certificate().display().to_string().into(),
        );
        d.as_table_mut()
            .unwrap()
            .insert("source".into(), pg_source.into());
    }
    doc["output"]
        .as_table_mut()
        .unwrap()
        .insert("dir".into(), out.display().to_string().into());
    let path = permit.with_file_name(format!(
        "{}-postgres.toml",
        permit.file_stem().unwrap().to_str().unwrap()
    ));
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Parquet file's bytes before its footer: the data pages (the footer holds the permit's hash,
/// which differs between the two permits).
fn data_pages(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    assert_eq!(&bytes[n - 4..], b"PAR1", "{} is Parquet", path.display());
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    bytes[..n - 8 - footer].to_vec()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_sample_permit_delivers_from_postgres_what_it_delivers_from_csv() {
    for holder in [
        "hospital",
        "insurer",
        "registry",
        "research",
        "cohort",
        "omop",
        "snds-hospital",
        "snds-insurer",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let csv_permit = sample_permit(holder, dir.path());
        let csv = run(&["-q", "run", "--permit", csv_permit.to_str().unwrap()], "");
        assert!(csv.status.success(), "{holder} from CSV: {}", stderr(&csv));
        let connection = fresh_database(&format!("ehds_{}", holder.replace('-', "_")));
        let pg_out = dir.path().join("out-postgres");
        let pg_permit = load_into_postgres(&csv_permit, &connection, &pg_out);
        let pg = run(
            &["-q", "run", "--permit", pg_permit.to_str().unwrap()],
            &connection,
        );
        assert!(
            pg.status.success(),
            "{holder} from PostgreSQL: {}",
            stderr(&pg)
        );
        let csv_out = dir.path().join("out").join(holder);
        let csv_files = parquet_files(&csv_out);
        let pg_files = parquet_files(&pg_out);
        assert!(!csv_files.is_empty(), "{holder} delivered tables");
        assert_eq!(
            csv_files.iter().map(|f| f.file_name()).collect::<Vec<_>>(),
            pg_files.iter().map(|f| f.file_name()).collect::<Vec<_>>(),
            "{holder}: the same tables"
        );
        for (a, b) in csv_files.iter().zip(&pg_files) {
            assert!(
                data_pages(a) == data_pages(b),
                "{holder}: {} differs between CSV and PostgreSQL",
                a.display()
            );
        }
        // The manifest records the database and what each read sent, never the connection.
        let manifest = std::fs::read_to_string(pg_out.join("manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let database = &m["database"];
        assert!(
            database["server_version"]
                .as_str()
                .is_some_and(|v| v.starts_with(char::is_numeric)),
            "{holder}: {database}"
        );
        assert!(database["snapshot_time"].as_str().unwrap().ends_with('Z'));
        assert!(
            database["server"]
                .as_str()
                .unwrap()
                .starts_with("postgres://localhost:")
        );
        let reads = database["reads"].as_array().unwrap();
        assert!(!reads.is_empty());
        for r in reads {
            assert_eq!(r["statement_sha256"].as_str().unwrap().len(), 64);
            assert!(r["rows"].as_u64().unwrap() > 0);
        }
        // The permit's table names, hashed as written: what a reviewer recomputes.
        let table_hashes: Vec<String> = toml::from_str::<toml::Table>(
            &std::fs::read_to_string(&pg_permit).unwrap(),
        )
        .unwrap()["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["source"].get("table").and_then(|t| t.as_str()))
            .map(|t| sha256_hex(t.as_bytes()))
            .collect();
        for r in reads {
            let hash = r["query_sha256"].as_str().unwrap().to_string();
            assert!(table_hashes.contains(&hash), "{holder}: {r}");
        }
        if holder == "hospital" {
            // `describe` measures the same figures from the database as from the CSV files.
            for dataset in ["patients", "stays"] {
                let describe = |permit: &Path| {
                    let o = run(
                        &[
                            "-q",
                            "describe",
                            "--permit",
                            permit.to_str().unwrap(),
                            "--dataset",
                            dataset,
                        ],
                        &connection,
                    );
                    assert!(o.status.success(), "describe {dataset}: {}", stderr(&o));
                    let mut d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    // The distribution's file type (CSV or, from a database, the Parquet
                    // delivery) is the one difference.
                    let graph = d["@graph"].as_array_mut().unwrap();
                    for dist in graph[0]["dcat:distribution"].as_array_mut().unwrap() {
                        dist.as_object_mut().unwrap().remove("dct:format").unwrap();
                    }
                    let file_type = "http://publications.europa.eu/resource/authority/file-type/";
                    let before = graph.len();
                    graph.retain(|node| !node["@id"].as_str().unwrap_or("").starts_with(file_type));
                    assert_eq!(graph.len(), before - 1);
                    d
                };
                assert_eq!(
                    describe(&csv_permit),
                    describe(&pg_permit),
                    "describe {dataset}"
                );
            }
        }
        for file in ["manifest.json", "report.json", "report.html"] {
            let text = std::fs::read_to_string(pg_out.join(file)).unwrap_or_default();
            assert!(
                !text.contains(&password()),
                "{holder}: {file} holds the password"
            );
        }
    }
}

/// A one-table permit over `table` of the database, columns `(name, type, action)`.
fn table_permit(dir: &Path, source: &str, columns: &[(&str, &str, &str)]) -> PathBuf {
    common::demo_key_to(&dir.join("key.hex"));
    let mut rows = dataset("rows", &[])
        .postgres()
        .source(&format!("connection_env = \"{CONNECTION_VAR}\""))
        .source("sslmode = \"verify-full\"")
        .source(&format!("sslrootcert = \"{}\"", certificate().display()))
        .source(source);
    for &(name, kind, action) in columns {
        let mut c = column(name, kind, action);
        if action == "pseudonymise" {
            c = c.set("domain", "d").set("identifier", "any");
        }
        rows = rows.column(c);
    }
    permit_text::permit("PG-TEST")
        .output(&dir.join("out").display().to_string())
        .output_option(&format!(
            "audit_log = \"{}\"",
            dir.join("audit.jsonl").display()
        ))
        .dataset(rows)
        .write(&dir.join("permit.toml"))
}

/// Asserts a failed run: exit 4, no delivery, and neither the password nor `values` anywhere in
/// what it printed or logged.
fn assert_refused(o: &Output, dir: &Path, values: &[&str]) -> String {
    let message = stderr(o);
    assert_eq!(o.status.code(), Some(4), "{message}");
    assert!(!dir.join("out").exists(), "nothing is delivered");
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    for shown in [
        &message,
        &String::from_utf8_lossy(&o.stdout).into_owned(),
        &audit,
    ] {
        assert!(!shown.contains(&password()), "the password shows: {shown}");
        for v in values {
            assert!(!shown.contains(v), "a value shows: {shown}");
        }
    }
    message
}

#[test]
fn a_column_of_another_type_stops_the_run_naming_both_types() {
    let connection = fresh_database("ehds_mismatch");
    client(&connection)
        .batch_execute(
            "CREATE TABLE visits (patient text, admitted integer); \
             INSERT INTO visits VALUES ('P-000123', 20190304)",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let permit = table_permit(
        dir.path(),
        "table = \"visits\"",
        &[
            ("patient", "string", "pseudonymise"),
            ("admitted", "date", "keep"),
        ],
    );
    let o = run(&["run", "--permit", permit.to_str().unwrap()], &connection);
    let message = assert_refused(&o, dir.path(), &["P-000123", "20190304"]);
    assert!(message.contains("column `admitted`"), "{message}");
    assert!(
        message.contains("int4") && message.contains("declared Date"),
        "{message}"
    );
    assert!(message.contains("postgres://localhost:"), "{message}");
}

#[test]
fn a_query_error_and_a_missing_column_stop_the_run() {
    let connection = one_visit_database("ehds_query_error");
    let dir = tempfile::tempdir().unwrap();
    // The message of a run of the query `query` that delivers the visits' patients.
    let refused = |query: &str| {
        let source = format!("query = \"{query}\"");
        let permit = table_permit(
            dir.path(),
            &source,
            &[("patient", "string", "pseudonymise")],
        );
        let o = run(&["run", "--permit", permit.to_str().unwrap()], &connection);
        assert_refused(&o, dir.path(), &[])
    };
    let message = refused("SELECT patient FROM no_such_table");
    assert!(
        message.contains("no_such_table") && message.contains("42P01"),
        "{message}"
    );

    let message = refused("SELECT patient AS someone FROM visits");
    assert!(
        message.contains("column `patient`") && message.contains("not in the query's result"),
        "{message}"
    );

    // A query that writes fails in the read-only transaction.
    client(&connection)
        .batch_execute("CREATE SEQUENCE drawn")
        .unwrap();
    let message = refused("SELECT patient FROM visits WHERE nextval('drawn') > 0");
    assert!(message.contains("read-only transaction"), "{message}");
    let drawn: bool = client(&connection)
        .query_one("SELECT is_called FROM drawn", &[])
        .unwrap()
        .get(0);
    assert!(!drawn, "the sequence was not advanced");
}

#[test]
fn wrong_credentials_and_an_unverified_server_name_the_host_and_never_the_password() {
    let connection = one_visit_database("ehds_credentials");
    let dir = tempfile::tempdir().unwrap();
    let permit = table_permit(
        dir.path(),
        "table = \"visits\"",
        &[("patient", "string", "pseudonymise")],
    );
    let wrong = connection.replace(&password(), "not-the-password-4242");
    let o = run(&["run", "--permit", permit.to_str().unwrap()], &wrong);
    let message = assert_refused(&o, dir.path(), &["not-the-password-4242"]);
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(message.contains("postgres://localhost:"), "{message}");

    // Without the cluster's certificate the server is not trusted: no fallback to plain text.
    let text = std::fs::read_to_string(&permit).unwrap();
    let untrusted = text.replace(
        &format!("sslrootcert = \"{}\"\n", certificate().display()),
        "",
    );
    assert_ne!(text, untrusted);
    std::fs::write(&permit, untrusted).unwrap();
    let o = run(&["run", "--permit", permit.to_str().unwrap()], &connection);
    let message = assert_refused(&o, dir.path(), &[]);
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // A connection file readable by others is refused before anything is read.
    let file = dir.path().join("connection.txt");
    std::fs::write(&file, &connection).unwrap();
    let text = std::fs::read_to_string(&permit).unwrap().replace(
        &format!("connection_env = \"{CONNECTION_VAR}\""),
        &format!("connection_file = \"{}\"", file.display()),
    );
    std::fs::write(&permit, &text).unwrap();
    let o = run(&["run", "--permit", permit.to_str().unwrap()], "");
    let message = assert_refused(&o, dir.path(), &[]);
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn a_connection_file_and_a_query_deliver_the_rows_over_tls() {
    let connection = fresh_database("ehds_tls");
    client(&connection)
        .batch_execute(
            "CREATE TABLE visits (patient text, admitted date, cost numeric(10,2), seen timestamptz, \
                                  urgent boolean, stays int2); \
             INSERT INTO visits VALUES ('P-1', '2019-03-04', 12.5, '2019-03-04 10:00:00+00', true, 1), \
                                       ('P-2', NULL, NULL, NULL, NULL, NULL), \
                                       ('P-3', '1999-12-31', 0.1, '1999-12-31 23:59:59.5+00', false, -3)",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connection.txt");
    common::write_private(&file, connection.as_bytes());
    let permit = table_permit(
        dir.path(),
        &format!(
            "query = \"SELECT * FROM visits WHERE patient <> 'P-0'\"\nconnection_file = \"{}\"",
            file.display()
        ),
        &[
            ("patient", "string", "keep"),
            ("admitted", "date", "keep"),
            ("cost", "float", "keep"),
            ("seen", "datetime", "keep"),
            ("urgent", "boolean", "keep"),
            ("stays", "integer", "keep"),
        ],
    );
    let text = std::fs::read_to_string(&permit)
        .unwrap()
        .replace(&format!("connection_env = \"{CONNECTION_VAR}\"\n"), "");
    std::fs::write(&permit, text).unwrap();
    let o = run(&["-q", "run", "--permit", permit.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", stderr(&o));
    // An independent reader of the delivery: PostgreSQL's values, as pyarrow reads them.
    let rows = common::independent_check("parquet_rows.py", &dir.path().join("out/rows.parquet"));
    // Delivered in the engine's own order (never the source's): compared as sorted by patient.
    let mut rows = rows.as_array().unwrap().clone();
    rows.sort_by_key(|r| r[0].as_str().unwrap().to_string());
    assert_eq!(
        serde_json::Value::Array(rows),
        serde_json::json!([
            ["P-1", "2019-03-04", 12.5, "2019-03-04T10:00:00", true, 1],
            ["P-2", null, null, null, null, null],
            [
                "P-3",
                "1999-12-31",
                0.1,
                "1999-12-31T23:59:59.500000",
                false,
                -3
            ]
        ])
    );
}

#[test]
fn a_dropped_connection_fails_the_run_and_commits_nothing() {
    let connection = fresh_database("ehds_dropped");
    let mut db = client(&connection);
    db.batch_execute(
        "CREATE TABLE visits AS SELECT 'P-' || i AS patient, i AS n \
         FROM generate_series(1, 3000000) AS i",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let permit = table_permit(
        dir.path(),
        "table = \"visits\"",
        &[
            ("patient", "string", "pseudonymise"),
            ("n", "integer", "keep"),
        ],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["-q", "run", "--permit", permit.to_str().unwrap()])
        .env(CONNECTION_VAR, &connection)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Terminate the backend that streams the rows as soon as it does.
    let mut killed = false;
    for _ in 0..2000 {
        let rows = db
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'ehds-prep' AND datname = 'ehds_dropped' \
                 AND query LIKE 'COPY%'",
                &[],
            )
            .unwrap();
        if !rows.is_empty() {
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(killed, "the run's COPY was seen");
    let o = child.wait_with_output().unwrap();
    let message = assert_refused(&o, dir.path(), &[]);
    assert!(message.contains("postgres://localhost:"), "{message}");
}

#[test]
fn validate_reads_a_sample_from_the_database() {
    let connection = fresh_database("ehds_validate");
    client(&connection)
        .batch_execute(
            "CREATE TABLE visits AS SELECT 'P-' || i AS patient FROM generate_series(1, 5000) AS i",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let permit = table_permit(
        dir.path(),
        "table = \"visits\"",
        &[("patient", "string", "pseudonymise")],
    );
    let o = run(
        &["validate", "--permit", permit.to_str().unwrap()],
        &connection,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(said.contains("1000"), "the sample's rows: {said}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn the_omop_sample_permit_on_postgres_delivers_what_the_csv_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let csv_permit = sample_permit("omop", dir.path());
    let csv = run(&["-q", "run", "--permit", csv_permit.to_str().unwrap()], "");
    assert!(csv.status.success(), "{}", stderr(&csv));
    let connection = fresh_database("ehds_omop_sample");
    load_into_postgres(&csv_permit, &connection, &dir.path().join("unused"));
    let permit = sample_permit("omop-postgres", dir.path());
    let text = std::fs::read_to_string(&permit).unwrap().replace(
        "sslmode = \"require\"\n",
        &format!(
            "sslmode = \"require\"\nsslrootcert = \"{}\"\n",
            certificate().display()
        ),
    );
    std::fs::write(&permit, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["-q", "run", "--permit", permit.to_str().unwrap()])
        .env("EHDS_OMOP_CONNECTION", &connection)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let csv_files = parquet_files(&dir.path().join("out/omop"));
    let pg_files = parquet_files(&dir.path().join("out/omop-postgres"));
    assert_eq!(csv_files.len(), 4);
    assert_eq!(pg_files.len(), 4);
    for (a, b) in csv_files.iter().zip(&pg_files) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(data_pages(a) == data_pages(b), "{} differs", a.display());
    }
}

#[test]
fn every_table_is_read_from_one_snapshot() {
    let connection = fresh_database("ehds_snapshot");
    let mut db = client(&connection);
    db.batch_execute(
        "CREATE TABLE first (patient text); INSERT INTO first VALUES ('P-1'), ('P-2'); \
         CREATE TABLE second (patient text); INSERT INTO second VALUES ('P-1')",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::demo_key_to(&dir.path().join("key.hex"));
    let dataset = |name: &str, query: &str| {
        format!(
            "[[datasets]]\nname = \"{name}\"\n\n[datasets.source]\nformat = \"postgres\"\n\
             connection_env = \"{CONNECTION_VAR}\"\nsslmode = \"verify-full\"\n\
             sslrootcert = \"{}\"\nquery = \"{query}\"\n\n[[datasets.columns]]\n\
             name = \"patient\"\ntype = \"string\"\naction = \"pseudonymise\"\ndomain = \"d\"\n\
             identifier = \"any\"\n\n",
            certificate().display()
        )
    };
    let permit = dir.path().join("permit.toml");
    std::fs::write(
        &permit,
        format!(
            "[permit]\nid = \"PG-SNAPSHOT\"\npurpose = \"t\"\nholder = \"h\"\nrecipient = \"r\"\n\n\
             [output]\ndir = \"{}\"\n\n[keys.k]\nfile = \"{}\"\n\n[domains.d]\nkey = \"k\"\n\n{}{}",
            dir.path().join("out").display(),
            dir.path().join("key.hex").display(),
            // The first table's read lasts two seconds: the second table changes meanwhile.
            dataset("first", "SELECT patient FROM first CROSS JOIN pg_sleep(2)"),
            dataset("second", "SELECT patient FROM second"),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["-q", "run", "--permit", permit.to_str().unwrap()])
        .env(CONNECTION_VAR, &connection)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..1000 {
        let reading: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ehds-prep' \
                 AND datname = 'ehds_snapshot' AND query LIKE 'COPY%pg_sleep%'",
                &[],
            )
            .unwrap()
            .get(0);
        if reading > 0 {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(seen, "the first table's read was seen");
    db.batch_execute("INSERT INTO second VALUES ('P-2'), ('P-3')")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    let rows_read = |name: &str| {
        report["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["rows_read"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows_read("first"), 2);
    assert_eq!(
        rows_read("second"),
        1,
        "rows committed after the snapshot are not read"
    );
}

#[test]
fn a_postgres_source_is_validated_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    common::demo_key_to(&dir.path().join("key.hex"));
    let permit = |sources: &[&str]| {
        let mut text = format!(
            "[permit]\nid = \"PG-V\"\npurpose = \"t\"\nholder = \"h\"\nrecipient = \"r\"\n\n\
             [output]\ndir = \"{}\"\n\n[keys.k]\nfile = \"{}\"\n\n[domains.d]\nkey = \"k\"\n",
            dir.path().join("out").display(),
            dir.path().join("key.hex").display()
        );
        for (i, source) in sources.iter().enumerate() {
            text.push_str(&format!(
                "\n[[datasets]]\nname = \"t{i}\"\n\n[datasets.source]\n{source}\n\n\
                 [[datasets.columns]]\nname = \"patient\"\ntype = \"string\"\n\
                 action = \"pseudonymise\"\ndomain = \"d\"\nidentifier = \"any\"\n"
            ));
        }
        let path = dir.path().join("permit.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let pg = "format = \"postgres\"\nconnection_env = \"PG\"";
    for (sources, at, says) in [
        (
            vec![format!("{pg}\ntable = \"t\"\nfiles = [\"x.csv\"]")],
            ".source.files",
            "no files",
        ),
        (
            vec![format!("{pg}\nconnection_file = \"c\"\ntable = \"t\"")],
            ".source.connection_env",
            "exactly one of `connection_env`",
        ),
        (
            vec![pg.to_string()],
            ".source.query",
            "exactly one of `query` and `table`",
        ),
        (
            vec![format!("{pg}\nquery = \"SELECT 1\"\ntable = \"t\"")],
            ".source.query",
            "exactly one of `query` and `table`",
        ),
        (
            vec![format!(
                "{pg}\nquery = \"SELECT patient FROM t; DROP TABLE t\""
            )],
            ".source.query",
            "without `;`",
        ),
        (
            vec![format!("{pg}\ntable = \"a.b.c\"")],
            ".source.table",
            "`schema.table`",
        ),
        (
            vec!["format = \"csv\"\nfiles = [\"x.csv\"]\ntable = \"t\"".to_string()],
            ".source.table",
            "only a `format = \"postgres\"` source",
        ),
        (
            vec![
                format!("{pg}\ntable = \"t\""),
                "format = \"postgres\"\nconnection_env = \"OTHER\"\ntable = \"u\"".to_string(),
            ],
            "datasets[1].source.connection_env",
            "the same connection",
        ),
    ] {
        let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
        let path = permit(&refs);
        let o = common::ehds_prep(&["validate", "--permit", path.to_str().unwrap()]);
        let message = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{sources:?}: {message}");
        assert!(
            message.contains(at) && message.contains(says),
            "{sources:?}: {message}"
        );
    }
}

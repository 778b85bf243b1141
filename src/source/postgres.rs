//! PostgreSQL sources: one snapshot of the holder's database for the whole run, its rows read in
//! bounded batches by binary `COPY`, the result's columns checked against the permit's declared
//! types before a row is read.
//!
//! A run opens one read-only `REPEATABLE READ` transaction and exports its snapshot; every read (a
//! dataset's pass, a cohort or profile scan, `validate`'s sample) runs on a connection of its own
//! that adopts that snapshot, so that reads may nest and overlap and still see one state of the
//! database. Only the declared columns cross the wire. The connection string comes from an
//! environment variable or an owner-only file and never appears in a message: errors name the
//! host, port and database alone.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use postgres::types::Type;
use postgres::{Client, Config};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Batch, Origin, SourceColumn, read_ahead};
use crate::error::{Error, Result};
use crate::kernels::{hex, keys};
use crate::permit::{ColumnType, SourceSpec, SslMode};

/// The rows `validate` reads of a source.
const SAMPLE_ROWS: usize = 1000;

/// What the manifest records of the database a run read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseRecord {
    /// `postgres://host:port/database` (never a user name or password).
    pub server: String,
    pub server_version: String,
    /// When the run's snapshot was taken (UTC, RFC 3339, microseconds).
    pub snapshot_time: String,
    /// Each query or table read, once.
    pub reads: Vec<QueryRecord>,
}

/// One source read from the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryRecord {
    /// What the rows are to the run (`source of stays`).
    pub role: String,
    /// SHA-256 of the source's `query` (or `table`) as the permit writes it.
    pub query_sha256: String,
    /// SHA-256 of the statement sent: `COPY (SELECT <declared columns> FROM <the query as a
    /// subquery, or the table>) TO STDOUT (FORMAT binary)`.
    pub statement_sha256: String,
    pub rows: u64,
}

/// The database of a run's PostgreSQL sources: its connection settings, the snapshot every read
/// adopts (taken at the first read), and connections kept for the next read.
pub struct Database {
    config: Config,
    server: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    snapshot: Mutex<Option<Snapshot>>,
    idle: Mutex<Vec<Client>>,
    reads: Mutex<Vec<QueryRecord>>,
}

/// The transaction that holds the run's snapshot open, and what identifies it.
struct Snapshot {
    _holder: Client,
    id: String,
    server_version: String,
    time: String,
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Database {
    /// The database of `spec` (a validated PostgreSQL source), its connection string read from
    /// the environment or its file; nothing is connected yet. `resolve` makes the permit's
    /// relative paths absolute.
    pub fn open(spec: &SourceSpec, resolve: impl Fn(&std::path::Path) -> PathBuf) -> Result<Self> {
        let (text, origin) = match (&spec.connection_env, &spec.connection_file) {
            (Some(var), _) => {
                let text = keys::take_from_environment(var).ok_or_else(|| {
                    Error::input(
                        format!("environment variable {var}"),
                        "connection",
                        "is not set or not valid Unicode: it holds the PostgreSQL connection \
                         string (`host=… dbname=… user=…` or a postgresql:// URL)",
                    )
                })?;
                (text, format!("environment variable {var}"))
            }
            (None, Some(file)) => {
                let path = resolve(file);
                let bytes = keys::read_secret_file(&path, "connection", Some(""))
                    .map_err(|m| Error::input(&path, "connection", m))?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::input(&path, "connection", "is not UTF-8 text"))?;
                (
                    zeroize::Zeroizing::new(text.trim().to_string()),
                    path.display().to_string(),
                )
            }
            (None, None) => unreachable!("validated: a connection is given"),
        };
        // The parser's message may quote the text, and the text holds the password.
        let mut config: Config = text.parse().map_err(|_| {
            Error::input(
                &origin,
                "connection",
                "is not a PostgreSQL connection string (libpq's `key=value` form or a \
                 postgresql:// URL; the text is not shown)",
            )
        })?;
        let server = server_label(&config);
        config.application_name("ehds-prep");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(30));
        }
        // The stricter of the permit's mode and the connection string's.
        let string_requires = config.get_ssl_mode() == postgres::config::SslMode::Require;
        let tls = match spec.sslmode {
            SslMode::Disable if !string_requires => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                None
            }
            mode => {
                let required =
                    string_requires || matches!(mode, SslMode::Require | SslMode::VerifyFull);
                config.ssl_mode(if required {
                    postgres::config::SslMode::Require
                } else {
                    postgres::config::SslMode::Prefer
                });
                Some(tls_connector(
                    spec.sslrootcert.as_deref().map(&resolve).as_deref(),
                )?)
            }
        };
        Ok(Database {
            config,
            server,
            tls,
            snapshot: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
        })
    }

    /// `postgres://host:port/database`, naming the server in messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What the manifest records: the server, its version, the snapshot and every full read;
    /// `None` when nothing was read.
    pub fn record(&self) -> Option<DatabaseRecord> {
        let snapshot = self.snapshot.lock().expect("no panic while held");
        let snapshot = snapshot.as_ref()?;
        Some(DatabaseRecord {
            server: self.server.clone(),
            server_version: snapshot.server_version.clone(),
            snapshot_time: snapshot.time.clone(),
            reads: self.reads.lock().expect("no panic while held").clone(),
        })
    }

    fn fail(&self, at: &str, message: impl Into<String>) -> Error {
        Error::input(&self.server, at, message)
    }

    /// A PostgreSQL error as a message: the server's own text for an error it reports (it names
    /// the statement's problem, never the connection string), else the client's kind of failure.
    fn describe(e: &postgres::Error) -> String {
        match e.as_db_error() {
            Some(db) => format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None if e.is_closed() => "the connection was closed (server stopped, or the backend \
                                      was terminated)"
                .into(),
            // The client's message and its causes ("error performing TLS handshake: invalid
            // peer certificate: UnknownIssuer").
            None => {
                let mut message = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    message.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                message
            }
        }
    }

    fn connect(&self) -> Result<Client> {
        let connected = match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        };
        connected.map_err(|e| {
            self.fail(
                "connection",
                format!("cannot connect: {}", Self::describe(&e)),
            )
        })
    }

    /// The id of the run's snapshot, taken on first use by a read-only `REPEATABLE READ`
    /// transaction that stays open until the run ends.
    fn snapshot_id(&self) -> Result<String> {
        let mut held = self.snapshot.lock().expect("no panic while held");
        if let Some(s) = held.as_ref() {
            return Ok(s.id.clone());
        }
        let mut holder = self.connect()?;
        let sql_error = |e: postgres::Error| self.fail("snapshot", Self::describe(&e));
        holder
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(sql_error)?;
        let row = holder
            .query_one(
                "SELECT pg_export_snapshot(), current_setting('server_version'), \
                 to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[],
            )
            .map_err(sql_error)?;
        let snapshot = Snapshot {
            id: row.get(0),
            server_version: row.get(1),
            time: row.get(2),
            _holder: holder,
        };
        let id = snapshot.id.clone();
        *held = Some(snapshot);
        Ok(id)
    }

    /// A connection inside a read-only transaction on the run's snapshot.
    fn session(&self) -> Result<Client> {
        let id = self.snapshot_id()?;
        let idle = self.idle.lock().expect("no panic while held").pop();
        let mut client = match idle {
            Some(c) => c,
            None => self.connect()?,
        };
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'; \
                 SET LOCAL DateStyle = 'ISO, YMD'"
            ))
            .map_err(|e| self.fail("snapshot", Self::describe(&e)))?;
        Ok(client)
    }

    /// Ends a read's transaction and keeps its connection for the next read.
    fn release(&self, mut client: Client) {
        if client.batch_execute("COMMIT").is_ok() {
            self.idle.lock().expect("no panic while held").push(client);
        }
    }

    /// The result's columns (name and type) of the source's query or table, without reading a row.
    fn columns(&self, client: &mut Client, from: &str) -> Result<Vec<(String, Type)>> {
        let statement = client
            .prepare(&format!("SELECT * FROM {from}"))
            .map_err(|e| self.fail("query", Self::describe(&e)))?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect())
    }

    /// Reads `columns` of the source in batches of `batch_rows`, each column checked against its
    /// declared type first (or read as text whatever its type, for `describe`).
    fn read(
        &self,
        spec: &SourceSpec,
        columns: &[SourceColumn],
        batch_rows: usize,
        purpose: Purpose<'_>,
        each: &mut dyn FnMut(Batch) -> Result<()>,
    ) -> Result<()> {
        let from = match (&spec.query, &spec.table) {
            (Some(q), _) => format!("({q}) AS ehds_source"),
            (None, Some(t)) => t.split('.').map(quoted).collect::<Vec<_>>().join("."),
            (None, None) => unreachable!("validated: a query or a table"),
        };
        let mut client = self.session()?;
        let available = self.columns(&mut client, &from)?;
        let mut select = Vec::with_capacity(columns.len());
        let mut decoders = Vec::with_capacity(columns.len());
        for c in columns {
            let found: Vec<&Type> = available
                .iter()
                .filter(|(name, _)| name == &c.name)
                .map(|(_, pg_type)| pg_type)
                .collect();
            let pg_type = match found[..] {
                [pg_type] => pg_type,
                [] => {
                    return Err(self.fail(
                        &format!("column `{}`", c.name),
                        "declared column is not in the query's result (names match exactly, \
                         case included)",
                    ));
                }
                _ => {
                    return Err(self.fail(
                        &format!("column `{}`", c.name),
                        "the query's result has two columns of this name; alias one",
                    ));
                }
            };
            let (expression, decoder) = if purpose == Purpose::Text {
                (format!("{}::text", quoted(&c.name)), Decoder::Text)
            } else {
                decoder_for(&c.name, pg_type, c.column_type)
                    .map_err(|m| self.fail(&format!("column `{}`", c.name), m))?
            };
            select.push(expression);
            decoders.push(decoder);
        }
        let limit_clause = match purpose {
            Purpose::Sample => format!(" LIMIT {SAMPLE_ROWS}"),
            _ => String::new(),
        };
        let statement = format!(
            "COPY (SELECT {} FROM {from}{limit_clause}) TO STDOUT (FORMAT binary)",
            select.join(", ")
        );
        let rows = {
            let reader = client
                .copy_out(statement.as_str())
                .map_err(|e| self.fail("query", Self::describe(&e)))?;
            let mut stream = CopyStream::new(std::io::BufReader::with_capacity(1 << 20, reader));
            let read = stream.read_all(columns, &decoders, batch_rows, &self.server, each);
            read.map_err(|e| match e {
                StreamError::Io(io) => self.fail(
                    "query",
                    format!(
                        "the rows stopped arriving ({}); nothing was delivered",
                        io_cause(&io)
                    ),
                ),
                StreamError::Run(e) => e,
            })?
        };
        self.release(client);
        if let Purpose::Deliver { role } = purpose {
            let record = QueryRecord {
                role: role.to_string(),
                query_sha256: hex::encode(&Sha256::digest(
                    spec.query
                        .as_ref()
                        .or(spec.table.as_ref())
                        .expect("validated")
                        .as_bytes(),
                )),
                statement_sha256: hex::encode(&Sha256::digest(statement.as_bytes())),
                rows,
            };
            let mut reads = self.reads.lock().expect("no panic while held");
            if !reads.contains(&record) {
                reads.push(record);
            }
        }
        Ok(())
    }
}

/// `postgres://host:port/database` of a connection's settings: what messages may name.
fn server_label(config: &Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{database}")
}

/// The TLS connector: the server's certificate is verified against the system's web roots and the
/// permit's `sslrootcert`, and its name against the host's.
fn tls_connector(
    root_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::input(path, "sslrootcert", format!("not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(Error::input(path, "sslrootcert", "holds no certificate"));
        }
        for c in certificates {
            roots
                .add(c)
                .map_err(|e| Error::input(path, "sslrootcert", format!("a certificate: {e}")))?;
        }
    }
    // ring, not aws-lc-rs, so that a fresh machine builds it without CMake; rustls marks it
    // deprecated for lacking post-quantum key exchange, which libpq's OpenSSL does not offer
    // either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// What a read of a source is for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Purpose<'a> {
    /// Every row in the declared types, recorded in the manifest under `role` (what the rows are
    /// to the run: `source of stays`).
    Deliver { role: &'a str },
    /// The first rows in the declared types, for `validate`.
    Sample,
    /// Every row as the server's text, for `describe`.
    Text,
}

/// How a column's binary values become the engine's. A number's width (int2/4/8, float4/8) is
/// told by its field's length.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decoder {
    Text,
    Integer,
    Float,
    /// Days since 2000-01-01.
    Date,
    /// Microseconds since 2000-01-01 00:00 (UTC for `timestamptz`).
    Timestamp,
    Bool,
}

/// The select expression and decoder of a column of PostgreSQL type `pg` declared `declared`, or
/// why the two do not fit (naming both types, never a value).
fn decoder_for(
    name: &str,
    pg: &Type,
    declared: ColumnType,
) -> std::result::Result<(String, Decoder), String> {
    use ColumnType as C;
    let column = quoted(name);
    let text_like = [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME];
    let fits = |decoder: Decoder| Ok((column.clone(), decoder));
    match (pg, declared) {
        // Text is read as a CSV field is: parsed in the declared type and format.
        (t, _) if text_like.contains(t) => fits(Decoder::Text),
        (&Type::INT2 | &Type::INT4 | &Type::INT8, C::Integer | C::Year | C::YearMonth) => {
            fits(Decoder::Integer)
        }
        (&Type::FLOAT4 | &Type::FLOAT8, C::Float) => fits(Decoder::Float),
        // numeric's binary form is base-10000 digits: the server converts it (correctly rounded,
        // as a CSV number is parsed).
        (&Type::NUMERIC, C::Float) => Ok((format!("{column}::float8"), Decoder::Float)),
        (&Type::DATE, C::Date | C::Year | C::YearMonth) => fits(Decoder::Date),
        (&Type::TIMESTAMP | &Type::TIMESTAMPTZ, C::Datetime) => fits(Decoder::Timestamp),
        (&Type::BOOL, C::Boolean) => fits(Decoder::Bool),
        _ => Err(format!(
            "is {} in the database but declared {declared:?}; fix the permit's type, or cast the \
             column in the query",
            pg.name(),
        )),
    }
}

/// Why the binary stream of a `COPY` stopped.
enum StreamError {
    /// Reading failed: the connection dropped, the server ended the statement, or the stream is
    /// malformed.
    Io(std::io::Error),
    /// The engine's own error (a value that does not decode, or the consumer's).
    Run(Error),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// The cause of a failed read, without the client's internals.
fn io_cause(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<postgres::Error>())
    {
        Some(pg) => Database::describe(pg),
        None => e.to_string(),
    }
}

/// PostgreSQL's binary `COPY` stream: a signature and header, then tuples of length-prefixed
/// fields, then a trailer of -1.
struct CopyStream<R> {
    reader: R,
    bytes: u64,
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl<R: Read> CopyStream<R> {
    fn new(reader: R) -> Self {
        CopyStream { reader, bytes: 0 }
    }

    fn exact<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf)?;
        self.bytes += N as u64;
        Ok(buf)
    }

    fn malformed(what: &str) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed binary COPY stream: {what}"),
        )
    }

    /// Reads every tuple, decoding the fields into batches of `batch_rows` rows given to `each`;
    /// returns the rows read.
    fn read_all(
        &mut self,
        columns: &[SourceColumn],
        decoders: &[Decoder],
        batch_rows: usize,
        server: &str,
        each: &mut dyn FnMut(Batch) -> Result<()>,
    ) -> std::result::Result<u64, StreamError> {
        if &self.exact::<11>()? != SIGNATURE {
            return Err(Self::malformed("signature").into());
        }
        let _flags = self.exact::<4>()?;
        let extension = u32::from_be_bytes(self.exact::<4>()?) as usize;
        std::io::copy(
            &mut (&mut self.reader).take(extension as u64),
            &mut std::io::sink(),
        )?;
        self.bytes += extension as u64;
        let mut rows = 0u64;
        let mut builders: Vec<ColumnBuilder> = decoders
            .iter()
            .map(|d| ColumnBuilder::new(*d, batch_rows))
            .collect();
        let mut batch_start = self.bytes;
        let mut field = Vec::new();
        let mut emit = |builders: &mut Vec<ColumnBuilder>, first: u64, bytes: u64| {
            let series = builders
                .iter_mut()
                .zip(columns)
                .map(|(b, c)| b.finish(&c.name).map_err(|row| (row, c)))
                .collect::<std::result::Result<Vec<_>, _>>();
            let origin = Origin {
                file: PathBuf::from(server),
                first_record: first,
                first_line: 0,
                source_bytes: bytes,
                text: None,
            };
            let series = series.map_err(|(row, c)| {
                StreamError::Run(Error::input(
                    server,
                    format!("{}, column `{}`", origin.place(row), c.name),
                    "text that is not UTF-8 (value not shown)",
                ))
            })?;
            let df = DataFrame::new_infer_height(series.into_iter().map(Column::from).collect())
                .map_err(|e| StreamError::Run(e.into()))?;
            each(Batch { df, origin }).map_err(StreamError::Run)
        };
        loop {
            let count = i16::from_be_bytes(self.exact::<2>()?);
            if count == -1 {
                break;
            }
            if count as usize != decoders.len() {
                return Err(Self::malformed("a tuple's field count").into());
            }
            for builder in builders.iter_mut() {
                let length = i32::from_be_bytes(self.exact::<4>()?);
                if length < 0 {
                    builder.push_null();
                    continue;
                }
                field.resize(length as usize, 0);
                self.reader.read_exact(&mut field)?;
                self.bytes += length as u64;
                builder
                    .push(&field)
                    .map_err(|what| std::io::Error::new(std::io::ErrorKind::InvalidData, what))?;
            }
            rows += 1;
            if rows.is_multiple_of(batch_rows as u64) {
                let first = rows - batch_rows as u64 + 1;
                emit(&mut builders, first, self.bytes - batch_start)?;
                batch_start = self.bytes;
            }
        }
        let pending = rows % batch_rows as u64;
        if pending > 0 {
            emit(&mut builders, rows - pending + 1, self.bytes - batch_start)?;
        }
        Ok(rows)
    }
}

/// One column's values of a batch as they are decoded.
enum ColumnBuilder {
    Text {
        bytes: Vec<u8>,
        ends: Vec<Option<usize>>,
    },
    Integer(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Date(Vec<Option<i32>>),
    Timestamp(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to PostgreSQL's epoch.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

impl ColumnBuilder {
    fn new(decoder: Decoder, rows: usize) -> ColumnBuilder {
        match decoder {
            Decoder::Text => ColumnBuilder::Text {
                bytes: Vec::new(),
                ends: Vec::with_capacity(rows),
            },
            Decoder::Integer => ColumnBuilder::Integer(Vec::with_capacity(rows)),
            Decoder::Float => ColumnBuilder::Float(Vec::with_capacity(rows)),
            Decoder::Date => ColumnBuilder::Date(Vec::with_capacity(rows)),
            Decoder::Timestamp => ColumnBuilder::Timestamp(Vec::with_capacity(rows)),
            Decoder::Bool => ColumnBuilder::Bool(Vec::with_capacity(rows)),
        }
    }

    fn push_null(&mut self) {
        match self {
            ColumnBuilder::Text { ends, .. } => ends.push(None),
            ColumnBuilder::Integer(v) | ColumnBuilder::Timestamp(v) => v.push(None),
            ColumnBuilder::Float(v) => v.push(None),
            ColumnBuilder::Date(v) => v.push(None),
            ColumnBuilder::Bool(v) => v.push(None),
        }
    }

    /// Decodes one field's bytes; an error names what was wrong with the field's width or value.
    fn push(&mut self, field: &[u8]) -> std::result::Result<(), String> {
        let wrong_width = |expected: &str| {
            Err(format!(
                "malformed binary COPY stream: a field of {} bytes, {expected} expected",
                field.len()
            ))
        };
        match self {
            ColumnBuilder::Text { bytes, ends } => {
                bytes.extend_from_slice(field);
                ends.push(Some(bytes.len()));
            }
            ColumnBuilder::Integer(v) => v.push(Some(match field.len() {
                2 => i16::from_be_bytes(field.try_into().expect("2 bytes")).into(),
                4 => i32::from_be_bytes(field.try_into().expect("4 bytes")).into(),
                8 => i64::from_be_bytes(field.try_into().expect("8 bytes")),
                _ => return wrong_width("2, 4 or 8"),
            })),
            ColumnBuilder::Float(v) => v.push(Some(match field.len() {
                4 => f32::from_be_bytes(field.try_into().expect("4 bytes")).into(),
                8 => f64::from_be_bytes(field.try_into().expect("8 bytes")),
                _ => return wrong_width("4 or 8"),
            })),
            ColumnBuilder::Date(v) => {
                let Ok(bytes) = field.try_into() else {
                    return wrong_width("4");
                };
                let days = i32::from_be_bytes(bytes);
                // ±infinity are the extremes; any date beyond the engine's calendar is refused by
                // the engine's check on typed dates, naming the row.
                v.push(Some(days.saturating_add(EPOCH_DAYS)));
            }
            ColumnBuilder::Timestamp(v) => {
                let Ok(bytes) = field.try_into() else {
                    return wrong_width("8");
                };
                let micros = i64::from_be_bytes(bytes);
                v.push(Some(micros.saturating_add(EPOCH_MICROS)));
            }
            ColumnBuilder::Bool(v) => {
                let [byte] = field else {
                    return wrong_width("1");
                };
                v.push(Some(*byte != 0));
            }
        }
        Ok(())
    }

    /// The batch's values as a column named `name`, the builder emptied for the next batch; for
    /// text that is not UTF-8, the row (0-based) of the first such value.
    fn finish(&mut self, name: &str) -> std::result::Result<Series, usize> {
        let name: PlSmallStr = name.into();
        Ok(match self {
            ColumnBuilder::Text { bytes, ends } => {
                let mut start = 0;
                let mut values = Vec::with_capacity(ends.len());
                for (row, end) in ends.iter().enumerate() {
                    values.push(match end {
                        Some(end) => {
                            let text = std::str::from_utf8(&bytes[start..*end]).map_err(|_| row)?;
                            start = *end;
                            Some(text)
                        }
                        None => None,
                    });
                }
                let series =
                    StringChunked::from_iter_options(name, values.into_iter()).into_series();
                bytes.clear();
                ends.clear();
                series
            }
            ColumnBuilder::Integer(v) => {
                Int64Chunked::from_iter_options(name, v.drain(..)).into_series()
            }
            ColumnBuilder::Float(v) => {
                Float64Chunked::from_iter_options(name, v.drain(..)).into_series()
            }
            ColumnBuilder::Date(v) => Int32Chunked::from_iter_options(name, v.drain(..))
                .into_date()
                .into_series(),
            ColumnBuilder::Timestamp(v) => Int64Chunked::from_iter_options(name, v.drain(..))
                .into_datetime(TimeUnit::Microseconds, None)
                .into_series(),
            ColumnBuilder::Bool(v) => {
                BooleanChunked::from_iter_options(name, v.drain(..)).into_series()
            }
        })
    }
}

/// Reads a PostgreSQL source batch by batch on a thread of its own, one batch ahead of `each`.
pub(super) fn read_batches(
    database: &Database,
    spec: &SourceSpec,
    columns: &[SourceColumn],
    batch_rows: usize,
    role: &str,
    each: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    read_ahead(
        |send| database.read(spec, columns, batch_rows, Purpose::Deliver { role }, send),
        each,
    )
}

/// The first rows of a PostgreSQL source, for `validate`.
pub(super) fn read_sample(
    database: &Database,
    spec: &SourceSpec,
    columns: &[SourceColumn],
) -> Result<Option<Batch>> {
    let mut sample = None;
    database.read(spec, columns, SAMPLE_ROWS, Purpose::Sample, &mut |b| {
        sample = Some(b);
        Ok(())
    })?;
    Ok(sample)
}

/// Named columns of a PostgreSQL source as text (the server's text form: ISO dates), batch by
/// batch, for `describe`.
pub(super) fn read_text(
    database: &Database,
    spec: &SourceSpec,
    columns: &[SourceColumn],
    batch_rows: usize,
    each: &mut dyn FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    database.read(spec, columns, batch_rows, Purpose::Text, &mut |b| {
        each(b.df)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of `tuples` (each field `None` for NULL), built by hand after
    /// PostgreSQL's documented layout.
    fn stream(tuples: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes()); // flags
        out.extend(4u32.to_be_bytes()); // header extension: 4 bytes, skipped
        out.extend([9, 9, 9, 9]);
        for t in tuples {
            out.extend((t.len() as i16).to_be_bytes());
            for f in t {
                match f {
                    None => out.extend((-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend((bytes.len() as i32).to_be_bytes());
                        out.extend(bytes);
                    }
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn column(name: &str) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            column_type: ColumnType::String,
            format: String::new(),
            null_values: Vec::new(),
        }
    }

    fn read(bytes: &[u8], decoders: &[Decoder], batch_rows: usize) -> Result<Vec<Batch>, String> {
        read_rows(bytes, decoders, batch_rows).map(|(batches, _)| batches)
    }

    /// The error of reading a stream that must fail.
    fn error(bytes: &[u8], decoders: &[Decoder]) -> String {
        match read(bytes, decoders, 10) {
            Ok(_) => panic!("the stream was read"),
            Err(e) => e,
        }
    }

    fn read_rows(
        bytes: &[u8],
        decoders: &[Decoder],
        batch_rows: usize,
    ) -> Result<(Vec<Batch>, u64), String> {
        let columns: Vec<SourceColumn> = (0..decoders.len())
            .map(|i| column(&format!("c{i}")))
            .collect();
        let mut batches = Vec::new();
        let mut each = |b: Batch| {
            batches.push(b);
            Ok(())
        };
        let rows = CopyStream::new(bytes)
            .read_all(
                &columns,
                decoders,
                batch_rows,
                "postgres://h:1/d",
                &mut each,
            )
            .map_err(|e| match e {
                StreamError::Io(e) => e.to_string(),
                StreamError::Run(e) => e.to_string(),
            })?;
        Ok((batches, rows))
    }

    #[test]
    fn values_decode_to_the_engines_types_and_batches_are_cut_at_batch_rows() {
        let day = |d: i32| Some(d.to_be_bytes().to_vec());
        let tuples: Vec<Vec<Option<Vec<u8>>>> = vec![
            vec![
                Some(b"\xc3\xa9t\xc3\xa9".to_vec()),
                Some(7i16.to_be_bytes().to_vec()),
                Some((-2i64).to_be_bytes().to_vec()),
                Some(0.1f64.to_be_bytes().to_vec()),
                day(0),
                Some(1_500_000i64.to_be_bytes().to_vec()),
                Some(vec![1]),
            ],
            vec![None, None, None, None, None, None, None],
            vec![
                Some(Vec::new()),
                Some((-3i16).to_be_bytes().to_vec()),
                Some(i64::MAX.to_be_bytes().to_vec()),
                Some(2.5f32.to_be_bytes().to_vec()),
                day(-10_957),
                Some((-1i64).to_be_bytes().to_vec()),
                Some(vec![0]),
            ],
        ];
        use Decoder::*;
        let decoders = [Text, Integer, Integer, Float, Date, Timestamp, Bool];
        let (batches, rows) = read_rows(&stream(&tuples), &decoders, 2).unwrap();
        assert_eq!(rows, 3);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].df.height(), 2);
        assert_eq!(batches[1].df.height(), 1);
        assert_eq!(batches[1].origin.first_record, 3);
        assert_eq!(batches[1].origin.place(0), "row 3");
        let mut df = batches[0].df.clone();
        df.vstack_mut(&batches[1].df).unwrap();
        let text: Vec<Option<&str>> = df.column("c0").unwrap().str().unwrap().iter().collect();
        assert_eq!(text, [Some("été"), None, Some("")]);
        let ints: Vec<Option<i64>> = df.column("c1").unwrap().i64().unwrap().iter().collect();
        assert_eq!(ints, [Some(7), None, Some(-3)]);
        let longs: Vec<Option<i64>> = df.column("c2").unwrap().i64().unwrap().iter().collect();
        assert_eq!(longs, [Some(-2), None, Some(i64::MAX)]);
        let floats: Vec<Option<f64>> = df.column("c3").unwrap().f64().unwrap().iter().collect();
        assert_eq!(floats, [Some(0.1), None, Some(2.5)]);
        // 2000-01-01 is day 10,957 since 1970-01-01; 1970-01-01 is 0.
        let dates: Vec<Option<i32>> = df
            .column("c4")
            .unwrap()
            .as_materialized_series()
            .to_physical_repr()
            .i32()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(dates, [Some(10_957), None, Some(0)]);
        let times: Vec<Option<i64>> = df
            .column("c5")
            .unwrap()
            .as_materialized_series()
            .to_physical_repr()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            times,
            [Some(946_684_801_500_000), None, Some(946_684_799_999_999)]
        );
        let bools: Vec<Option<bool>> = df.column("c6").unwrap().bool().unwrap().iter().collect();
        assert_eq!(bools, [Some(true), None, Some(false)]);
    }

    #[test]
    fn a_malformed_or_cut_stream_is_an_error_and_bad_text_names_its_row() {
        let one = |field: Vec<u8>| stream(&[vec![Some(b"ok".to_vec())], vec![Some(field)]]);
        // Not UTF-8: the row (2) and column, not the value.
        let e = error(&one(vec![0xff, b'x']), &[Decoder::Text]);
        assert!(
            e.contains("row 2, column `c0`") && e.contains("not UTF-8"),
            "{e}"
        );
        // A field of the wrong width for its type.
        let e = error(&stream(&[vec![Some(vec![1, 2, 3])]]), &[Decoder::Date]);
        assert!(e.contains("3 bytes, 4 expected"), "{e}");
        // Cut short: no trailer.
        let bytes = one(b"x".to_vec());
        let e = error(&bytes[..bytes.len() - 3], &[Decoder::Text]);
        assert!(e.contains("failed to fill whole buffer"), "{e}");
        // A wrong signature, and a tuple of another field count.
        let mut bad = one(b"x".to_vec());
        bad[0] = b'X';
        assert!(error(&bad, &[Decoder::Text]).contains("signature"));
        let two = stream(&[vec![Some(b"a".to_vec()), Some(b"b".to_vec())]]);
        assert!(error(&two, &[Decoder::Text]).contains("field count"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quoted("person"), "\"person\"");
    }
}

//! The engine's kernels as DataFusion scalar functions, for the plans a cluster runs: a value
//! parsed in its declared type, an identifier's status, its pseudonym, the opt-out check, a keyed
//! date shift, a date's year or month, a text's prefix, the delivery order's key, and an anonymised
//! dataset's chosen generalisation and the persons it removed from the others.
//!
//! Each function calls the same kernel as the single-node engine, so the values are the same.
//! Plans are serialised and may be logged, so they never carry a key or an identifier: a function
//! names its key by name and fingerprint, and each process (scheduler, executor, the client of an
//! in-process cluster) holds its own [`KeyRing`], loaded at start from files or the environment.
//! An executor whose key has another fingerprint refuses the task.
//!
//! An error a function raises carries a tagged, typed form of the engine's error ([`raise`]), so
//! that the client can give the user the same message and exit code as a single-node run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Array, Float64Array, Int8Array,
    Int64Array, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Date32Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::Error;
use crate::kernels::dateshift::DateShifter;
use crate::kernels::generalise;
use crate::kernels::identifier::{Checked, IdentifierRule};
use crate::kernels::keys::SecretKey;
use crate::kernels::pseudonymise::{Encoding, PseudonymFormat, Pseudonymiser};
use crate::kernels::values;
use crate::permit::{ColumnType, IdentifierSpec, InvalidPolicy, OptOutInvalid};
use crate::plan::OptOut;

/// The secret keys a process holds, by the permit's key names, each with its fingerprint. Never
/// serialised, never printed.
#[derive(Default)]
pub struct KeyRing {
    keys: BTreeMap<String, (SecretKey, String)>,
}

impl KeyRing {
    pub fn new(keys: BTreeMap<String, SecretKey>) -> KeyRing {
        KeyRing {
            keys: keys
                .into_iter()
                .map(|(name, key)| {
                    let fingerprint = key.fingerprint();
                    (name, (key, fingerprint))
                })
                .collect(),
        }
    }

    /// The key `name`, if its fingerprint is `fingerprint`; otherwise the error a task ends with.
    /// Checked at every call: a plan naming the key by another fingerprint is never served.
    fn get(&self, name: &str, fingerprint: &str) -> DfResult<&SecretKey> {
        let (key, own) = self.keys.get(name).ok_or_else(|| {
            raise(&Error::Key {
                source_name: name.into(),
                message: "this process holds no key of that name: start the executor with \
                          `--key NAME=FILE` (or `NAME=env:VARIABLE`) for every key the permit's \
                          domains use"
                    .into(),
            })
        })?;
        if own != fingerprint {
            return Err(raise(&Error::Key {
                source_name: name.into(),
                message: format!(
                    "this executor's key has fingerprint {own}, the plan was made with {fingerprint}: \
                     it refuses the task (pseudonyms under another key would not link)"
                ),
            }));
        }
        Ok(key)
    }

    /// Names and fingerprints of the keys held, for the process's start-up line.
    pub fn describe(&self) -> String {
        self.keys
            .iter()
            .map(|(name, (_, fingerprint))| format!("{name} ({fingerprint})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a process derived once and keeps: by the text of what it was derived from.
type Cache<V> = Mutex<HashMap<String, Arc<V>>>;

/// The cached value of `id`, made by `make` the first time.
fn cached<V>(cache: &Cache<V>, id: String, make: impl FnOnce() -> DfResult<V>) -> DfResult<Arc<V>> {
    let mut cache = cache.lock().expect("no panic while held");
    if let Some(v) = cache.get(&id) {
        return Ok(v.clone());
    }
    let v = Arc::new(make()?);
    cache.insert(id, v.clone());
    Ok(v)
}

/// Marks an engine error inside a DataFusion error's text: `[ehds-prep:KIND]` then the parts,
/// separated by the unit separator, so that [`recover`] finds it in a job's failure message.
const TAG: &str = "[ehds-prep:";
const SEP: char = '\u{1f}';

/// An engine error as a DataFusion error that crosses the cluster.
pub fn raise(e: &Error) -> DataFusionError {
    let text = match e {
        Error::Input { file, at, message } => {
            format!("{TAG}input]{}{SEP}{at}{SEP}{message}{SEP}", file.display())
        }
        Error::Key {
            source_name,
            message,
        } => format!("{TAG}key]{source_name}{SEP}{message}{SEP}"),
        Error::Internal(message) => format!("{TAG}internal]{message}{SEP}"),
        other => format!("{TAG}internal]{other}{SEP}"),
    };
    DataFusionError::Execution(text)
}

/// The engine error a failed job carries, or an internal error with the job's message.
pub fn recover(message: &str) -> Error {
    let Some(start) = message.find(TAG) else {
        return Error::Internal(format!("the cluster job failed: {message}"));
    };
    let rest = &message[start + TAG.len()..];
    // A task's error may reach the client in Debug form, its separators and quotes escaped.
    let escaped = format!("{:?}", SEP);
    let escaped = escaped.trim_matches('\'');
    let rest = match rest.contains(escaped) {
        true => rest
            .replace(escaped, &SEP.to_string())
            .replace("\\\"", "\""),
        false => rest.to_string(),
    };
    let (kind, rest) = rest.split_once(']').unwrap_or(("internal", &rest));
    let mut parts = rest.split(SEP);
    let mut next = || parts.next().unwrap_or_default().to_string();
    match kind {
        "input" => Error::Input {
            file: PathBuf::from(next()),
            at: next(),
            message: next(),
        },
        "key" => Error::Key {
            source_name: next(),
            message: next(),
        },
        _ => Error::Internal(next()),
    }
}

/// An identifier rule as a plan carries it: `nir`, `any`, `pseudonym` or `pattern:REGEX`, after
/// `case:` when letters keep their case.
pub fn rule_text(spec: IdentifierSpec, pattern: Option<&str>, case_sensitive: bool) -> String {
    let kind = match spec {
        IdentifierSpec::Nir => "nir".to_string(),
        IdentifierSpec::Any => "any".to_string(),
        IdentifierSpec::Pseudonym => "pseudonym".to_string(),
        IdentifierSpec::Pattern => format!("pattern:{}", pattern.unwrap_or_default()),
    };
    if case_sensitive {
        format!("case:{kind}")
    } else {
        kind
    }
}

/// The rule a [`rule_text`] names.
fn parse_rule(text: &str) -> DfResult<IdentifierRule> {
    let (case, kind) = match text.strip_prefix("case:") {
        Some(kind) => (true, kind),
        None => (false, text),
    };
    let (spec, pattern) = match kind {
        "nir" => (IdentifierSpec::Nir, None),
        "any" => (IdentifierSpec::Any, None),
        "pseudonym" => (IdentifierSpec::Pseudonym, None),
        _ => match kind.strip_prefix("pattern:") {
            Some(p) => {
                crate::kernels::identifier::compile_pattern(p)
                    .map_err(DataFusionError::Execution)?;
                (IdentifierSpec::Pattern, Some(p))
            }
            None => return Err(DataFusionError::Execution(format!("unknown rule `{kind}`"))),
        },
    };
    let rule = crate::plan::identifier_rule(spec, pattern);
    Ok(if case { rule.preserving_case() } else { rule })
}

/// A pseudonym format as a plan carries it: `hex:128`, `base64url:256`.
pub fn format_text(format: PseudonymFormat) -> String {
    let encoding = match format.encoding {
        Encoding::Hex => "hex",
        Encoding::Base64url => "base64url",
    };
    format!("{encoding}:{}", format.bits)
}

fn parse_format(text: &str) -> DfResult<PseudonymFormat> {
    let bad = || DataFusionError::Execution(format!("unknown pseudonym format `{text}`"));
    let (encoding, bits) = text.split_once(':').ok_or_else(bad)?;
    let encoding = match encoding {
        "hex" => Encoding::Hex,
        "base64url" => Encoding::Base64url,
        _ => return Err(bad()),
    };
    let bits = match bits {
        "128" => 128,
        "256" => 256,
        _ => return Err(bad()),
    };
    Ok(PseudonymFormat { encoding, bits })
}

/// The text of a literal argument.
fn literal(args: &ScalarFunctionArgs, at: usize) -> DfResult<String> {
    match args.args.get(at) {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        )) => Ok(s.clone()),
        _ => Err(DataFusionError::Execution(format!(
            "argument {} must be a text literal",
            at + 1
        ))),
    }
}

fn literal_i64(args: &ScalarFunctionArgs, at: usize) -> DfResult<i64> {
    match args.args.get(at) {
        Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) => Ok(*v),
        _ => Err(DataFusionError::Execution(format!(
            "argument {} must be an integer literal",
            at + 1
        ))),
    }
}

/// Argument `at` as an array of the batch's rows, in `as_type`.
fn column(args: &ScalarFunctionArgs, at: usize, as_type: &DataType) -> DfResult<ArrayRef> {
    let array = args.args[at].clone().into_array(args.number_rows)?;
    Ok(datafusion::arrow::compute::cast(&array, as_type)?)
}

fn texts(array: &ArrayRef) -> Vec<Option<&str>> {
    array.as_string::<i32>().iter().collect()
}

/// Argument `at`'s days since 1970-01-01: a date's, or a datetime's day (as the engine counts it).
fn days(args: &ScalarFunctionArgs, at: usize) -> DfResult<Vec<Option<i32>>> {
    let array = args.args[at].clone().into_array(args.number_rows)?;
    Ok(match array.data_type() {
        DataType::Timestamp(..) => {
            let micros = datafusion::arrow::compute::cast(
                &array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            micros
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|t| t.map(values::datetime_day))
                .collect()
        }
        _ => datafusion::arrow::compute::cast(&array, &DataType::Date32)?
            .as_primitive::<Date32Type>()
            .iter()
            .collect(),
    })
}

/// Texts that mean "missing", as a plan carries them: joined by the unit separator.
pub fn nulls_text(nulls: &[String]) -> String {
    nulls.join(&SEP.to_string())
}

/// What every function of the plan shares: its name, how many arguments, the process's keys and
/// caches of what it derived from them. Compared by name, as DataFusion compares functions.
#[derive(Debug)]
struct Function {
    name: &'static str,
    signature: Signature,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// (text, column type, format, nulls, place) → the declared type.
    Parse(ColumnType),
    /// (value, rule) → 0 valid, 1 missing, 2 invalid.
    Status,
    /// (value, rule, key, fingerprint, context, format, on_invalid, on_missing, place) → pseudonym.
    Pseudonym,
    /// (value, rule, list file, list SHA-256, list rule, on_invalid) → whether the person opted out.
    OptedOut,
    /// (value, rule) → the identifier's normal form, null when missing.
    Normal,
    /// (date, person, rule, key, fingerprint, context, min, max, plausible only, place) → shifted date.
    Shift { datetime: bool },
    /// date → its year.
    Year,
    /// date → the first day of its month.
    Month,
    /// date or datetime → its day.
    Day,
    /// (text, n) → its first n characters.
    Prefix,
    /// text → the delivery order's 64-bit key.
    OrderKey,
    /// (every delivered column) → the row's hash, as the delivery order computes it.
    RowHash,
    /// condition → whether it holds (a null does not). A function rather than `IS TRUE`: the
    /// planner and Ballista's serialised plans then agree that the result may be null.
    Holds,
    /// (birth date, date, place) → the age in whole years at that date.
    Age,
    /// (person, rule, salt) → the key of the person's birth date ([`birth_key`]).
    BirthKey,
    /// (birth key, date, file, SHA-256) → whether the date is the person's birth date.
    BirthEcho,
    /// (value, file, SHA-256, quasi-identifier) → the value's label at the chosen level.
    Generalise,
    /// (file, SHA-256, label…) → whether the class of these labels is suppressed.
    Suppressed,
    /// (value, file, SHA-256) → whether the value is in the file's list.
    Listed,
}

/// An anonymised dataset's chosen transformation as the executors apply it (the client writes it
/// into the staging folder, `cluster::anonymise`): per quasi-identifier, each level-0 value the
/// profile met (a date by its ISO text, a missing value as the empty text) with its label at the
/// chosen level (the empty label: missing); and the suppressed classes by their labels.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Generalisation {
    pub labels: Vec<HashMap<String, String>>,
    pub suppressed: HashSet<Vec<String>>,
}

/// A process's functions: the plans name them, each process registers its own.
pub struct Functions {
    keys: Arc<KeyRing>,
    pseudonymisers: Cache<Pseudonymiser>,
    shifters: Cache<DateShifter>,
    opt_outs: Cache<OptOut>,
    generalisations: Cache<Generalisation>,
    lists: Cache<HashSet<String>>,
    births: Cache<HashMap<String, i32>>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Functions {{ keys: {} }}", self.keys.keys.len())
    }
}

/// One registered function: its shape and the process's shared state.
#[derive(Debug)]
struct Udf {
    function: Function,
    shared: Arc<Functions>,
}

impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.function.name == other.function.name
    }
}
impl Eq for Udf {}
impl Hash for Udf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.name.hash(state);
    }
}

/// The name each function is registered under.
pub fn parse_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::String | ColumnType::Text => "ehds_parse_text",
        ColumnType::Integer => "ehds_parse_integer",
        ColumnType::Float => "ehds_parse_float",
        ColumnType::Date => "ehds_parse_date",
        ColumnType::Datetime => "ehds_parse_datetime",
        ColumnType::Boolean => "ehds_parse_boolean",
        ColumnType::Year => "ehds_parse_year",
        ColumnType::YearMonth => "ehds_parse_year_month",
    }
}
pub const STATUS: &str = "ehds_identifier_status";
pub const PSEUDONYM: &str = "ehds_pseudonym";
pub const OPTED_OUT: &str = "ehds_opted_out";
pub const NORMAL: &str = "ehds_normal_identifier";
pub const SHIFT_DATE: &str = "ehds_shift_date";
pub const SHIFT_DATETIME: &str = "ehds_shift_datetime";
pub const YEAR: &str = "ehds_year";
pub const MONTH: &str = "ehds_month";
pub const DAY: &str = "ehds_day";
pub const PREFIX: &str = "ehds_prefix";
pub const ORDER_KEY: &str = "ehds_order_key";
pub const ROW_HASH: &str = "ehds_row_hash";
pub const HOLDS: &str = "ehds_holds";
pub const AGE: &str = "ehds_age";
pub const BIRTH_KEY: &str = "ehds_birth_key";
pub const BIRTH_ECHO: &str = "ehds_birth_echo";
pub const GENERALISE: &str = "ehds_generalise";
pub const SUPPRESSED: &str = "ehds_suppressed";
pub const LISTED: &str = "ehds_listed";

/// Every function: its name, signature and kind.
fn table() -> Vec<(&'static str, Signature, Kind)> {
    let any = |arity| Signature::any(arity, Volatility::Immutable);
    let parse = [
        ColumnType::String,
        ColumnType::Integer,
        ColumnType::Float,
        ColumnType::Date,
        ColumnType::Datetime,
        ColumnType::Boolean,
    ]
    .map(|t| (parse_name(t), any(5), Kind::Parse(t)));
    let others = [
        (STATUS, any(2), Kind::Status),
        (PSEUDONYM, any(9), Kind::Pseudonym),
        (OPTED_OUT, any(6), Kind::OptedOut),
        (NORMAL, any(2), Kind::Normal),
        (SHIFT_DATE, any(10), Kind::Shift { datetime: false }),
        (SHIFT_DATETIME, any(10), Kind::Shift { datetime: true }),
        (YEAR, any(1), Kind::Year),
        (MONTH, any(1), Kind::Month),
        (DAY, any(1), Kind::Day),
        (PREFIX, any(2), Kind::Prefix),
        (ORDER_KEY, any(1), Kind::OrderKey),
        (HOLDS, any(1), Kind::Holds),
        (AGE, any(3), Kind::Age),
        (BIRTH_KEY, any(3), Kind::BirthKey),
        (BIRTH_ECHO, any(4), Kind::BirthEcho),
        // Volatile, so that the optimiser never moves them below the cohort's filter (a row
        // outside the cohort was not profiled) nor evaluates them on rows it would drop.
        (
            GENERALISE,
            Signature::any(4, Volatility::Volatile),
            Kind::Generalise,
        ),
        (LISTED, any(3), Kind::Listed),
        (
            ROW_HASH,
            Signature::variadic_any(Volatility::Immutable),
            Kind::RowHash,
        ),
        (
            SUPPRESSED,
            Signature::variadic_any(Volatility::Volatile),
            Kind::Suppressed,
        ),
    ];
    parse.into_iter().chain(others).collect()
}

/// The names of every function.
pub fn names() -> Vec<&'static str> {
    table().into_iter().map(|(name, ..)| name).collect()
}

/// Every function, bound to `keys`.
pub fn all(keys: Arc<KeyRing>) -> Vec<Arc<ScalarUDF>> {
    let shared = Arc::new(Functions {
        keys,
        pseudonymisers: Mutex::default(),
        shifters: Mutex::default(),
        opt_outs: Mutex::default(),
        generalisations: Mutex::default(),
        lists: Mutex::default(),
        births: Mutex::default(),
    });
    table()
        .into_iter()
        .map(|(name, signature, kind)| {
            Arc::new(ScalarUDF::new_from_impl(Udf {
                function: Function {
                    name,
                    signature,
                    kind,
                },
                shared: shared.clone(),
            }))
        })
        .collect()
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.function.name
    }

    fn signature(&self) -> &Signature {
        &self.function.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.function.kind {
            Kind::Parse(t) => match t {
                ColumnType::String | ColumnType::Text => DataType::Utf8,
                ColumnType::Integer => DataType::Int64,
                ColumnType::Float => DataType::Float64,
                ColumnType::Date | ColumnType::Year | ColumnType::YearMonth => DataType::Date32,
                ColumnType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
                ColumnType::Boolean => DataType::Boolean,
            },
            Kind::Status => DataType::Int8,
            Kind::Pseudonym | Kind::Normal | Kind::Prefix | Kind::Generalise | Kind::BirthKey => {
                DataType::Utf8
            }
            Kind::OptedOut | Kind::Holds | Kind::Suppressed | Kind::Listed | Kind::BirthEcho => {
                DataType::Boolean
            }
            Kind::Shift { datetime: false } | Kind::Month | Kind::Day => DataType::Date32,
            Kind::Shift { datetime: true } => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Year | Kind::Age => DataType::Int64,
            Kind::OrderKey | Kind::RowHash => DataType::UInt64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array: ArrayRef = match self.function.kind {
            Kind::Parse(t) => parse(&args, t)?,
            Kind::Status => status(&args)?,
            Kind::Pseudonym => self.shared.pseudonym(&args)?,
            Kind::OptedOut => self.shared.opted_out(&args)?,
            Kind::Normal => normal(&args)?,
            Kind::Shift { datetime } => self.shared.shift(&args, datetime)?,
            Kind::Year => Arc::new(Int64Array::from(generalise::date_to_year(&days(&args, 0)?))),
            Kind::Month => Arc::new(Date32Array::from(generalise::date_to_month_start(&days(
                &args, 0,
            )?))),
            Kind::Day => Arc::new(Date32Array::from(days(&args, 0)?)),
            Kind::Prefix => {
                let n = literal_i64(&args, 1)? as usize;
                let text = column(&args, 0, &DataType::Utf8)?;
                Arc::new(StringArray::from(generalise::prefix(&texts(&text), n)))
            }
            Kind::OrderKey => {
                let text = column(&args, 0, &DataType::Utf8)?;
                let keys: Vec<Option<u64>> = texts(&text)
                    .iter()
                    .map(|v| Some(crate::delivery::order::text_key(*v)))
                    .collect();
                Arc::new(UInt64Array::from(keys))
            }
            Kind::RowHash => row_hashes(&args)?,
            Kind::Holds => {
                let condition = column(&args, 0, &DataType::Boolean)?;
                let holds: BooleanArray = condition
                    .as_boolean()
                    .iter()
                    .map(|v| Some(v == Some(true)))
                    .collect();
                Arc::new(holds)
            }
            Kind::Age => age(&args)?,
            Kind::BirthKey => birth_keys(&args)?,
            Kind::BirthEcho => self.shared.birth_echoes(&args)?,
            Kind::Generalise => self.shared.generalise(&args)?,
            Kind::Suppressed => self.shared.suppressed(&args)?,
            Kind::Listed => self.shared.listed(&args)?,
        };
        Ok(ColumnarValue::Array(array))
    }
}

/// A column's texts in its declared type: a text listed in `nulls` is missing; other values are
/// trimmed and parsed as the CSV reader parses them. A value that does not parse fails the task,
/// naming the place (never the value).
fn parse(args: &ScalarFunctionArgs, t: ColumnType) -> DfResult<ArrayRef> {
    let text = column(args, 0, &DataType::Utf8)?;
    let format = literal(args, 2)?;
    let nulls_joined = literal(args, 3)?;
    let nulls: Vec<&str> = match nulls_joined.as_str() {
        "" => Vec::new(),
        joined => joined.split(SEP).collect(),
    };
    let place = literal(args, 4)?;
    let values: Vec<Option<&str>> = texts(&text)
        .into_iter()
        .map(|v| v.filter(|v| !nulls.contains(v)))
        .collect();
    let failed = |row: usize, value: &str| {
        error_at(
            &place,
            row,
            format!(
                "value is not {}{} (value not shown)",
                crate::source::csv_columns::rule(t, &format),
                crate::source::csv_columns::missing_hint(value)
            ),
        )
    };
    macro_rules! parsed {
        ($parse:expr, $array:ty) => {{
            let parse = $parse;
            let mut out = Vec::with_capacity(values.len());
            for (row, v) in values.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(v) => Some(parse(values::trimmed(v)).ok_or_else(|| failed(row, v))?),
                });
            }
            Arc::new(<$array>::from(out)) as ArrayRef
        }};
    }
    Ok(match t {
        ColumnType::String | ColumnType::Text => Arc::new(StringArray::from(values.clone())),
        ColumnType::Integer => parsed!(values::parse_integer, Int64Array),
        ColumnType::Float => parsed!(values::float_parser(&format), Float64Array),
        ColumnType::Date => parsed!(values::date_parser(&format), Date32Array),
        ColumnType::Datetime => {
            parsed!(values::datetime_parser(&format), TimestampMicrosecondArray)
        }
        ColumnType::Boolean => parsed!(values::parse_boolean, BooleanArray),
        ColumnType::Year | ColumnType::YearMonth => {
            return Err(DataFusionError::NotImplemented(
                "partial dates on a cluster".into(),
            ));
        }
    })
}

/// Each row's hash over its delivered values in column order, as the single-node delivery order
/// computes it (`delivery::order`): text as its bytes, numbers, dates and datetimes as their
/// physical value widened to 8 little-endian bytes, a boolean as 0 or 1.
fn row_hashes(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    use crate::delivery::order::{ROW_HASH_START, add_to_row_hash};
    let mut hashes = vec![ROW_HASH_START; args.number_rows];
    for value in &args.args {
        let array = value.clone().into_array(args.number_rows)?;
        let add_bits = |hashes: &mut [u64], bits: &mut dyn Iterator<Item = Option<u64>>| {
            for (h, v) in hashes.iter_mut().zip(bits) {
                *h = add_to_row_hash(*h, v.map(u64::to_le_bytes).as_ref().map(|b| &b[..]));
            }
        };
        match array.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                for (h, v) in hashes.iter_mut().zip(text.as_string::<i32>().iter()) {
                    *h = add_to_row_hash(*h, v.map(str::as_bytes));
                }
            }
            DataType::Boolean => add_bits(
                &mut hashes,
                &mut array.as_boolean().iter().map(|v| v.map(u64::from)),
            ),
            DataType::Float64 => add_bits(
                &mut hashes,
                &mut array
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .iter()
                    .map(|v| v.map(f64::to_bits)),
            ),
            _ => {
                let wide = datafusion::arrow::compute::cast(&array, &DataType::Int64)?;
                add_bits(
                    &mut hashes,
                    &mut wide
                        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .iter()
                        .map(|v| v.map(|v| v as u64)),
                )
            }
        }
    }
    Ok(Arc::new(UInt64Array::from(hashes)))
}

/// The bytes of a file the client shares with every process (the opt-out list, a chosen
/// generalisation), refused unless they are the ones the run was planned with (`sha256`).
fn shared_file(file: &Path, sha256: &str, what: &str) -> DfResult<Vec<u8>> {
    let bytes = std::fs::read(file).map_err(|e| {
        raise(&Error::input(
            file,
            "",
            format!("{what} cannot be read on this executor: {e}"),
        ))
    })?;
    if sha256_hex(&bytes) != sha256 {
        return Err(raise(&Error::input(
            file,
            "",
            format!(
                "{what} on this executor differs from the one the run was planned with (SHA-256): \
                 every executor must see the same file"
            ),
        )));
    }
    Ok(bytes)
}

/// The JSON value of the shared file at `file` ([`shared_file`]), read by this process once.
fn shared_json<V: serde::de::DeserializeOwned>(
    cache: &Cache<V>,
    file: &str,
    sha256: &str,
    what: &str,
) -> DfResult<Arc<V>> {
    cached(cache, format!("{file}{SEP}{sha256}"), || {
        let bytes = shared_file(Path::new(file), sha256, what)?;
        serde_json::from_slice(&bytes).map_err(|e| DataFusionError::Execution(e.to_string()))
    })
}

/// The key a person's birth date is shared under: SHA-256 of the run's random salt and the
/// person's normal form, so that the shared file of birth dates names no identifier.
pub fn birth_key(salt: &str, normal: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    h.update([SEP as u8]);
    h.update(normal.as_bytes());
    crate::kernels::hex::encode(&h.finalize())
}

/// Each person's [`birth_key`], null when the identifier is not valid.
fn birth_keys(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    let rule = parse_rule(&literal(args, 1)?)?;
    let salt = literal(args, 2)?;
    let text = column(args, 0, &DataType::Utf8)?;
    let mut normal = String::new();
    let keys: Vec<Option<String>> = texts(&text)
        .into_iter()
        .map(|v| {
            (rule.check_into(v, &mut normal) == Checked::Valid).then(|| birth_key(&salt, &normal))
        })
        .collect();
    Ok(Arc::new(StringArray::from(keys)))
}

/// Each birth date's age in whole years at its date (`values::age_in_years`); a birth after that
/// date fails the task, naming the place (never the value).
fn age(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    let (births, at) = (days(args, 0)?, days(args, 1)?);
    let place = literal(args, 2)?;
    let ages = values::ages(&births, &at)
        .map_err(|row| error_at(&place, row, values::BIRTH_AFTER_AGE_DATE))?;
    Ok(Arc::new(Int64Array::from_iter(
        ages.into_iter().map(|a| a.map(i64::from)),
    )))
}

/// The error of a task at row `row` of its batch, at `place` (a file and a column, as a plan
/// carries them), in the engine's typed form; never the value.
fn error_at(place: &str, row: usize, message: impl Into<String>) -> DataFusionError {
    let (file, at) = place.split_once(SEP).unwrap_or((place, ""));
    raise(&Error::input(
        file,
        format!("{at} (row {row} of a cluster batch)"),
        message,
    ))
}

/// The SHA-256 of `bytes`, in hexadecimal: how plans name a shared file's content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::kernels::hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn checked_code(c: Checked) -> i8 {
    match c {
        Checked::Valid => 0,
        Checked::Missing => 1,
        Checked::Invalid => 2,
    }
}

fn status(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    let rule = parse_rule(&literal(args, 1)?)?;
    let text = column(args, 0, &DataType::Utf8)?;
    let mut normal = String::new();
    let codes: Vec<i8> = texts(&text)
        .into_iter()
        .map(|v| checked_code(rule.check_into(v, &mut normal)))
        .collect();
    Ok(Arc::new(Int8Array::from(codes)))
}

fn normal(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    let rule = parse_rule(&literal(args, 1)?)?;
    let text = column(args, 0, &DataType::Utf8)?;
    let mut normal = String::new();
    let out: Vec<Option<String>> = texts(&text)
        .into_iter()
        .map(|v| (rule.check_into(v, &mut normal) != Checked::Missing).then(|| normal.clone()))
        .collect();
    Ok(Arc::new(StringArray::from(out)))
}

fn policy(text: &str) -> DfResult<InvalidPolicy> {
    Ok(match text {
        "reject-row" => InvalidPolicy::RejectRow,
        "null" => InvalidPolicy::Null,
        "fail" => InvalidPolicy::Fail,
        _ => {
            return Err(DataFusionError::Execution(format!(
                "unknown policy `{text}`"
            )));
        }
    })
}

/// The text a plan carries for a policy.
pub fn policy_text(p: InvalidPolicy) -> &'static str {
    match p {
        InvalidPolicy::RejectRow => "reject-row",
        InvalidPolicy::Null => "null",
        InvalidPolicy::Fail => "fail",
    }
}

impl Functions {
    /// The domain's pseudonymiser, derived from this process's key once.
    fn pseudonymiser(
        &self,
        key: &str,
        fingerprint: &str,
        context: &str,
        format: &str,
    ) -> DfResult<Arc<Pseudonymiser>> {
        let secret = self.keys.get(key, fingerprint)?;
        cached(
            &self.pseudonymisers,
            [key, context, format].join(&SEP.to_string()),
            || {
                Ok(Pseudonymiser::new(
                    &secret.domain_key(context),
                    parse_format(format)?,
                ))
            },
        )
    }

    fn pseudonym(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let rule = parse_rule(&literal(args, 1)?)?;
        let (key, fingerprint) = (literal(args, 2)?, literal(args, 3)?);
        let (context, format) = (literal(args, 4)?, literal(args, 5)?);
        let on_invalid = policy(&literal(args, 6)?)?;
        let on_missing = policy(&literal(args, 7)?)?;
        let place = literal(args, 8)?;
        let pseudonymiser = self.pseudonymiser(&key, &fingerprint, &context, &format)?;
        let text = column(args, 0, &DataType::Utf8)?;
        let values = texts(&text);
        let batch = pseudonymiser.pseudonymise(&[&rule], &[&values]);
        for (row, status) in batch.status.iter().enumerate() {
            let (what, policy) = match status {
                Checked::Valid => continue,
                Checked::Invalid => ("invalid", on_invalid),
                Checked::Missing => ("missing", on_missing),
            };
            if policy == InvalidPolicy::Fail {
                return Err(error_at(
                    &place,
                    row,
                    format!(
                        "identifier is {what} and the permit says on_{what} = \"fail\" (value not shown)"
                    ),
                ));
            }
        }
        let text = String::from_utf8(batch.text.clone()).expect("encodings are ASCII");
        let out: Vec<Option<&str>> = batch.values_in(&text).collect();
        Ok(Arc::new(StringArray::from(out)))
    }

    fn opted_out(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let rule = parse_rule(&literal(args, 1)?)?;
        let (file, sha256) = (PathBuf::from(literal(args, 2)?), literal(args, 3)?);
        let list = self.opt_out(&file, &sha256, &literal(args, 4)?, &literal(args, 5)?)?;
        let text = column(args, 0, &DataType::Utf8)?;
        let mut normal = String::new();
        let mut out = BooleanBuilder::with_capacity(text.len());
        for v in texts(&text) {
            out.append_value(
                rule.check_into(v, &mut normal) != Checked::Missing && list.contains(&normal),
            );
        }
        Ok(Arc::new(out.finish()))
    }

    /// The opt-out list at `file`, read by this process once; refused unless its bytes are the
    /// ones the client read (`sha256`).
    fn opt_out(
        &self,
        file: &Path,
        sha256: &str,
        rule: &str,
        on_invalid: &str,
    ) -> DfResult<Arc<OptOut>> {
        let id = format!(
            "{}{SEP}{sha256}{SEP}{rule}{SEP}{on_invalid}",
            file.display()
        );
        cached(&self.opt_outs, id, || {
            let bytes = shared_file(file, sha256, "the opt-out list")?;
            let on_invalid = match on_invalid {
                "keep" => OptOutInvalid::Keep,
                _ => OptOutInvalid::Fail,
            };
            OptOut::parse(&bytes, file, &[parse_rule(rule)?], ';', on_invalid)
                .map_err(|e| raise(&e))
        })
    }

    /// The generalisation at `file`, read by this process once.
    fn generalisation(&self, file: &str, sha256: &str) -> DfResult<Arc<Generalisation>> {
        shared_json(
            &self.generalisations,
            file,
            sha256,
            "the chosen generalisation",
        )
    }

    /// Each value's label at its quasi-identifier's chosen level; a value the profile did not meet
    /// fails the task (the source changed during the run).
    fn generalise(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let g = self.generalisation(&literal(args, 1)?, &literal(args, 2)?)?;
        let j = literal_i64(args, 3)? as usize;
        let labels = g.labels.get(j).ok_or_else(|| {
            DataFusionError::Execution(format!("the generalisation has no quasi-identifier {j}"))
        })?;
        let value = args.args[0].clone().into_array(args.number_rows)?;
        let label = |text: Option<&str>| -> DfResult<Option<&str>> {
            let label = labels.get(text.unwrap_or_default()).ok_or_else(|| {
                raise(&Error::Internal(
                    "a quasi-identifier holds a value the profile did not meet: the source \
                     changed during the run"
                        .into(),
                ))
            })?;
            Ok((!label.is_empty()).then_some(label.as_str()))
        };
        let out: Vec<Option<&str>> = match value.data_type() {
            DataType::Date32 => {
                let mut iso = String::with_capacity(10);
                value
                    .as_primitive::<Date32Type>()
                    .iter()
                    .map(|day| {
                        label(day.map(|day| {
                            values::iso_date_into(day, &mut iso);
                            iso.as_str()
                        }))
                    })
                    .collect::<DfResult<_>>()?
            }
            _ => {
                let text = datafusion::arrow::compute::cast(&value, &DataType::Utf8)?;
                texts(&text)
                    .into_iter()
                    .map(label)
                    .collect::<DfResult<_>>()?
            }
        };
        Ok(Arc::new(StringArray::from(out)))
    }

    /// Whether each row's class (its labels, a missing one as the empty text) is suppressed.
    fn suppressed(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let g = self.generalisation(&literal(args, 0)?, &literal(args, 1)?)?;
        let labels: Vec<ArrayRef> = (2..args.args.len())
            .map(|at| column(args, at, &DataType::Utf8))
            .collect::<DfResult<_>>()?;
        let labels: Vec<Vec<Option<&str>>> = labels.iter().map(texts).collect();
        let mut class: Vec<String> = vec![String::new(); labels.len()];
        let out: BooleanArray = (0..args.number_rows)
            .map(|row| {
                for (part, column) in class.iter_mut().zip(&labels) {
                    part.clear();
                    part.push_str(column[row].unwrap_or_default());
                }
                Some(g.suppressed.contains(&class))
            })
            .collect();
        Ok(Arc::new(out))
    }

    /// Whether each row's date (its day) is its person's birth date, by the birth key, in the
    /// shared file of birth dates (a JSON map of birth key to day, read once).
    fn birth_echoes(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let (file, sha256) = (literal(args, 2)?, literal(args, 3)?);
        let births = shared_json(&self.births, &file, &sha256, "the birth dates")?;
        let keys = column(args, 0, &DataType::Utf8)?;
        let days = days(args, 1)?;
        let out: BooleanArray = texts(&keys)
            .into_iter()
            .zip(days)
            .map(|(key, day)| {
                Some(
                    matches!((key.and_then(|k| births.get(k)), day), (Some(b), Some(d)) if *b == d),
                )
            })
            .collect();
        Ok(Arc::new(out))
    }

    /// Whether each value is in the list at `file` (a JSON array of texts, read once).
    fn listed(&self, args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
        let (file, sha256) = (literal(args, 1)?, literal(args, 2)?);
        let list = shared_json(&self.lists, &file, &sha256, "the list of removed persons")?;
        let text = column(args, 0, &DataType::Utf8)?;
        let out: BooleanArray = texts(&text)
            .into_iter()
            .map(|v| Some(v.is_some_and(|v| list.contains(v))))
            .collect();
        Ok(Arc::new(out))
    }

    fn shift(&self, args: &ScalarFunctionArgs, datetime: bool) -> DfResult<ArrayRef> {
        let rule = parse_rule(&literal(args, 2)?)?;
        let (key, fingerprint, context) = (literal(args, 3)?, literal(args, 4)?, literal(args, 5)?);
        let (min, max) = (literal_i64(args, 6)?, literal_i64(args, 7)?);
        let unusual_dates = literal(args, 8)? == "unusual";
        let place = literal(args, 9)?;
        let secret = self.keys.get(&key, &fingerprint)?;
        let id = format!("{key}{SEP}{context}{SEP}{min}{SEP}{max}");
        let shifter = cached(&self.shifters, id, || {
            Ok(DateShifter::new(
                secret.domain_key(&context).expose(),
                min as i32,
                max as i32,
            ))
        })?;
        let persons = column(args, 1, &DataType::Utf8)?;
        let (mut normal, mut message) = (String::new(), Vec::new());
        let shifts: Vec<Option<i32>> = texts(&persons)
            .into_iter()
            .map(|id| match rule.check_into(id, &mut normal) {
                Checked::Missing => None,
                _ => Some(shifter.shift(&normal, &mut message)),
            })
            .collect();
        let implausible = |row: usize| error_at(&place, row, crate::engine::IMPLAUSIBLE_SHIFT);
        let (first, last) = crate::engine::PLAUSIBLE_DAYS;
        if datetime {
            let times = column(args, 0, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let times: Vec<Option<i64>> = times
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect();
            let mut out = Vec::with_capacity(times.len());
            for (row, (t, s)) in times.iter().zip(&shifts).enumerate() {
                if let Some(t) = t {
                    let day = t.div_euclid(values::MICROS_PER_DAY) as i32;
                    if !unusual_dates && (day < first || day > last) {
                        return Err(implausible(row));
                    }
                }
                out.push(
                    t.zip(*s)
                        .map(|(t, s)| t + s as i64 * values::MICROS_PER_DAY),
                );
            }
            Ok(Arc::new(TimestampMicrosecondArray::from(out)))
        } else {
            let dates = days(args, 0)?;
            let mut out = Vec::with_capacity(dates.len());
            for (row, (d, s)) in dates.iter().zip(&shifts).enumerate() {
                if let Some(d) = d
                    && !unusual_dates
                    && (*d < first || *d > last)
                {
                    return Err(implausible(row));
                }
                out.push(d.zip(*s).map(|(d, s)| d + s));
            }
            Ok(Arc::new(Date32Array::from(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn key() -> SecretKey {
        SecretKey::new((0u8..32).collect(), "test").unwrap()
    }

    fn ring() -> Arc<KeyRing> {
        Arc::new(KeyRing::new(BTreeMap::from([("k".to_string(), key())])))
    }

    fn udf(name: &str, keys: Arc<KeyRing>) -> Arc<ScalarUDF> {
        all(keys).into_iter().find(|u| u.name() == name).unwrap()
    }

    fn text_arg(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.into())))
    }

    fn int_arg(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    fn invoke(udf: &ScalarUDF, args: Vec<ColumnarValue>, rows: usize) -> DfResult<ArrayRef> {
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let types: Vec<DataType> = args.iter().map(|a| a.data_type()).collect();
        let return_field = Arc::new(Field::new("r", udf.return_type(&types)?, true));
        let out = udf.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: rows,
            return_field,
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.into_array(rows)
    }

    const IDS: [Option<&str>; 5] = [
        Some("1 85 05 78 006 084 91"),
        Some("185057800608491"),
        Some("2A not a nir"),
        None,
        Some("2 61 06 2A 103 000 97"),
    ];

    /// The arguments of `ehds_pseudonym` over [`IDS`] under key `k` (a missing one: null).
    fn pseudonym_args(
        fingerprint: &str,
        context: &str,
        format: &str,
        on_invalid: &str,
    ) -> Vec<ColumnarValue> {
        vec![
            ColumnarValue::Array(Arc::new(StringArray::from(IDS.to_vec()))),
            text_arg("nir"),
            text_arg("k"),
            text_arg(fingerprint),
            text_arg(context),
            text_arg(format),
            text_arg(on_invalid),
            text_arg("null"),
            text_arg("stays.csv\u{1f}column `nir`"),
        ]
    }

    #[test]
    fn pseudonyms_are_the_engines_and_missing_or_invalid_ones_null() {
        let format = PseudonymFormat::default();
        let args = pseudonym_args(
            &key().fingerprint(),
            "permit/linkage",
            &format_text(format),
            "null",
        );
        let out = invoke(&udf(PSEUDONYM, ring()), args, IDS.len()).unwrap();
        let expected = Pseudonymiser::new(&key().domain_key("permit/linkage"), format);
        let rule = crate::plan::identifier_rule(IdentifierSpec::Nir, None);
        let batch = expected.pseudonymise(&[&rule], &[&IDS]);
        let text = String::from_utf8(batch.text.clone()).unwrap();
        let want: Vec<Option<&str>> = batch.values_in(&text).collect();
        let got: Vec<Option<&str>> = out.as_string::<i32>().iter().collect();
        assert_eq!(got, want);
        assert_eq!(got[0], got[1], "one person spelt two ways");
        assert!(got[0].is_some() && got[4].is_some());
        assert_eq!((got[2], got[3]), (None, None));
    }

    #[test]
    fn an_invalid_identifier_under_fail_stops_the_task_without_its_value() {
        let args = pseudonym_args(&key().fingerprint(), "c", "hex:128", "fail");
        let e = invoke(&udf(PSEUDONYM, ring()), args, IDS.len()).unwrap_err();
        let Error::Input { file, at, message } = recover(&e.to_string()) else {
            panic!("{e}")
        };
        assert_eq!(file, PathBuf::from("stays.csv"));
        assert!(
            at.starts_with("column `nir`") && message.contains("invalid"),
            "{at} {message}"
        );
        assert!(!e.to_string().contains("2A not a nir"));
    }

    #[test]
    fn a_key_of_another_fingerprint_or_no_key_is_refused() {
        let other = SecretKey::new((100u8..132).collect(), "other").unwrap();
        for (keys, expected) in [
            (
                Arc::new(KeyRing::new(BTreeMap::from([("k".to_string(), other)]))),
                "fingerprint",
            ),
            (Arc::new(KeyRing::default()), "holds no key"),
        ] {
            let args = pseudonym_args(&key().fingerprint(), "c", "hex:128", "null");
            let e = invoke(&udf(PSEUDONYM, keys), args, IDS.len()).unwrap_err();
            match recover(&format!("job failed: {e} (retried)")) {
                Error::Key {
                    source_name,
                    message,
                } => {
                    assert_eq!(source_name, "k");
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn a_plan_naming_another_fingerprint_is_refused_after_a_served_one() {
        let pseudonym = udf(PSEUDONYM, ring());
        let call = |fingerprint: &str| {
            let args = pseudonym_args(fingerprint, "c", "hex:128", "null");
            invoke(&pseudonym, args, IDS.len())
        };
        assert!(call(&key().fingerprint()).is_ok());
        let e = call(&"0".repeat(32)).unwrap_err();
        assert!(matches!(recover(&e.to_string()), Error::Key { .. }), "{e}");
    }

    #[test]
    fn shifts_are_the_kernels_and_implausible_dates_stop_the_task() {
        let persons = [
            "185057800608491",
            "1 85 05 78 006 084 91",
            "261062A10300097",
        ];
        let days = [18_000, 18_000, 19_000];
        let call = |dates: Vec<Option<i32>>| {
            let args = vec![
                ColumnarValue::Array(Arc::new(Date32Array::from(dates))),
                ColumnarValue::Array(Arc::new(StringArray::from(persons.to_vec()))),
                text_arg("nir"),
                text_arg("k"),
                text_arg(&key().fingerprint()),
                text_arg("p/shift"),
                int_arg(-30),
                int_arg(30),
                text_arg("plausible"),
                text_arg("f\u{1f}column `d`"),
            ];
            invoke(&udf(SHIFT_DATE, ring()), args, 3)
        };
        let out = call(days.iter().map(|d| Some(*d)).collect()).unwrap();
        let shifter = DateShifter::new(key().domain_key("p/shift").expose(), -30, 30);
        let rule = crate::plan::identifier_rule(IdentifierSpec::Nir, None);
        let (mut normal, mut message) = (String::new(), Vec::new());
        let want: Vec<Option<i32>> = persons
            .iter()
            .zip(days)
            .map(|(p, d)| {
                rule.check_into(Some(p), &mut normal);
                Some(d + shifter.shift(&normal, &mut message))
            })
            .collect();
        let got: Vec<Option<i32>> = out.as_primitive::<Date32Type>().iter().collect();
        assert_eq!(got, want);
        assert_eq!(got[0], got[1], "one person, one shift");
        assert!(got.iter().zip(days).all(|(g, d)| g.unwrap() != d));
        let e = call(vec![Some(18_000), Some(-100_000), None]).unwrap_err();
        assert!(
            matches!(recover(&e.to_string()), Error::Input { .. }),
            "{e}"
        );
    }

    #[test]
    fn row_hashes_are_the_delivery_orders() {
        use polars::prelude::{Column, DataFrame, Int32Chunked, IntoColumn, NewChunkedArray};
        let text = [Some("a"), None, Some(""), Some("é")];
        let ints = [Some(1i64), Some(-2), None, Some(i64::MAX)];
        let floats = [Some(0.5f64), None, Some(-0.0), Some(1e300)];
        let dates = [Some(-1i32), Some(0), None, Some(20_000)];
        let flags = [Some(true), Some(false), None, Some(true)];
        let df = DataFrame::new(
            4,
            vec![
                Column::new("t".into(), text),
                Column::new("i".into(), ints),
                Column::new("f".into(), floats),
                Int32Chunked::from_iter_options("d".into(), dates.into_iter())
                    .into_date()
                    .into_column(),
                Column::new("b".into(), flags),
            ],
        )
        .unwrap();
        let want = crate::delivery::order::row_hashes(&df).unwrap();
        let args = vec![
            ColumnarValue::Array(Arc::new(StringArray::from(text.to_vec()))),
            ColumnarValue::Array(Arc::new(Int64Array::from(ints.to_vec()))),
            ColumnarValue::Array(Arc::new(Float64Array::from(floats.to_vec()))),
            ColumnarValue::Array(Arc::new(Date32Array::from(dates.to_vec()))),
            ColumnarValue::Array(Arc::new(BooleanArray::from(flags.to_vec()))),
        ];
        let got = invoke(&udf(ROW_HASH, ring()), args, 4).unwrap();
        let got: Vec<u64> = got
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .values()
            .to_vec();
        assert_eq!(got, want);
    }

    /// An engine error comes back whole, whether a job's failure carries its text or its Debug
    /// form (separators and quotes escaped, as Ballista wraps a task's error); an internal error
    /// is not named twice.
    #[test]
    fn errors_cross_the_cluster_in_either_form() {
        let input = Error::input(
            "stays.csv",
            "column `nir` (row 3 of a cluster batch)",
            "identifier is \"invalid\" (value not shown)",
        );
        let internal = Error::Internal("the source changed during the run".into());
        for e in [input, internal] {
            let text = raise(&e).to_string();
            for carried in [
                format!("job failed: {text}"),
                format!("job failed: Execution({text:?}))))"),
            ] {
                let back = recover(&carried);
                assert_eq!(back.to_string(), e.to_string(), "{carried}");
                assert_eq!(back.exit_code(), e.exit_code());
            }
        }
    }

    #[test]
    fn rules_and_formats_cross_the_cluster_unchanged() {
        for (spec, pattern, case) in [
            (IdentifierSpec::Nir, None, false),
            (IdentifierSpec::Any, None, true),
            (IdentifierSpec::Pseudonym, None, false),
            (IdentifierSpec::Pattern, Some("[A-Z]{2}:\\d+"), true),
        ] {
            let rule = parse_rule(&rule_text(spec, pattern, case)).unwrap();
            assert_eq!(rule.preserves_case(), case);
            let mut want = crate::plan::identifier_rule(spec, pattern);
            if case {
                want = want.preserving_case();
            }
            let (mut a, mut b) = (String::new(), String::new());
            for v in ["ab:12", "AB:12", "1 85 05 78 006 084 91", "", "x"] {
                assert_eq!(
                    rule.check_into(Some(v), &mut a),
                    want.check_into(Some(v), &mut b)
                );
                assert_eq!(a, b);
            }
        }
        for encoding in [Encoding::Hex, Encoding::Base64url] {
            for bits in [128, 256] {
                let f = PseudonymFormat { encoding, bits };
                assert_eq!(parse_format(&format_text(f)).unwrap(), f);
            }
        }
    }

    /// A chosen generalisation labels each value (a date by its ISO text, a missing value as the
    /// empty text), finds suppressed classes by their labels, and is refused when its bytes are
    /// not the ones the plan names or a value was not profiled; a list is matched exactly.
    #[test]
    fn generalisations_and_lists_are_read_from_their_checked_files() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generalisation {
            labels: vec![
                HashMap::from([
                    ("2019-07-16".to_string(), "2019".to_string()),
                    ("".to_string(), "".to_string()),
                ]),
                HashMap::from([("20520".to_string(), "2A".to_string())]),
            ],
            suppressed: HashSet::from([vec!["".to_string(), "2A".to_string()]]),
        };
        let bytes = serde_json::to_vec(&g).unwrap();
        let file = dir.path().join("g.json");
        std::fs::write(&file, &bytes).unwrap();
        let sha = sha256_hex(&bytes);
        let path = file.display().to_string();
        let generalise = udf(GENERALISE, ring());
        // 2019-07-16 is day 18093 since 1970-01-01.
        let dates = ColumnarValue::Array(Arc::new(Date32Array::from(vec![Some(18093), None])));
        let out = invoke(
            &generalise,
            vec![dates.clone(), text_arg(&path), text_arg(&sha), int_arg(0)],
            2,
        )
        .unwrap();
        let out: Vec<Option<&str>> = out.as_string::<i32>().iter().collect();
        assert_eq!(out, [Some("2019"), None]);
        let unseen = ColumnarValue::Array(Arc::new(StringArray::from(vec!["75001"])));
        let e = invoke(
            &generalise,
            vec![unseen, text_arg(&path), text_arg(&sha), int_arg(1)],
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("changed during the run"), "{e}");
        assert!(!e.to_string().contains("75001"), "{e}");
        let labels = |v: Vec<Option<&str>>| ColumnarValue::Array(Arc::new(StringArray::from(v)));
        let suppressed = invoke(
            &udf(SUPPRESSED, ring()),
            vec![
                text_arg(&path),
                text_arg(&sha),
                labels(vec![None, Some("2019"), Some("")]),
                labels(vec![Some("2A"), Some("2A"), Some("2A")]),
            ],
            3,
        )
        .unwrap();
        let suppressed: Vec<Option<bool>> = suppressed.as_boolean().iter().collect();
        assert_eq!(suppressed, [Some(true), Some(false), Some(true)]);
        // Another file's bytes under the planned name: refused by every process.
        std::fs::write(&file, b"{}").unwrap();
        let fresh = udf(GENERALISE, ring());
        let e = invoke(
            &fresh,
            vec![dates, text_arg(&path), text_arg(&sha), int_arg(0)],
            2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("differs from the one"), "{e}");
        let list = dir.path().join("list.json");
        let bytes = serde_json::to_vec(&["ab12", "cd34"]).unwrap();
        std::fs::write(&list, &bytes).unwrap();
        let sha = sha256_hex(&bytes);
        let listed = invoke(
            &udf(LISTED, ring()),
            vec![
                labels(vec![Some("ab12"), Some("AB12"), None, Some("cd3")]),
                text_arg(&list.display().to_string()),
                text_arg(&sha),
            ],
            4,
        )
        .unwrap();
        let listed: Vec<Option<bool>> = listed.as_boolean().iter().collect();
        assert_eq!(listed, [Some(true), Some(false), Some(false), Some(false)]);
    }
}

//! The permit's rules beyond its types: names, references between sections, the options each
//! action and type allows, privacy models and linkage. Every error names the key path and what is
//! allowed.

use std::collections::HashSet;

use super::*;
use crate::error::{Error, Result};

impl Permit {
    pub(super) fn validate(&self) -> Result<()> {
        self.validate_header()?;
        let s = &self.spec;
        if s.datasets.is_empty() {
            return self.fail(
                "datasets".into(),
                "at least one [[datasets]] is required".into(),
            );
        }
        if let Some(l) = &s.linkage {
            validate_linkage(l).or_else(|(field, m)| self.fail(format!("linkage{field}"), m))?;
        }
        self.validate_person_spellings()?;
        let mut names = HashSet::new();
        for (di, d) in s.datasets.iter().enumerate() {
            self.validate_dataset(di, d, &mut names)?;
        }
        self.validate_unshifted()?;
        self.validate_derivations()
    }

    /// One permit names its persons one way: a person is matched across datasets (opt-out list,
    /// one fate, person-level cohorts) and shifted by its normal form, so a composite person in
    /// one dataset and a single column in another would give the same human two shifts and two
    /// fates. An opt-out list of composites gives the parts of every composite person.
    fn validate_person_spellings(&self) -> Result<()> {
        let s = &self.spec;
        let composite = s.datasets.iter().find_map(|d| d.person_composite());
        let parts = s.opt_out.as_ref().and_then(|o| o.parts.as_ref());
        for (di, d) in s.datasets.iter().enumerate() {
            let Some(person) = &d.person else { continue };
            let at = format!("datasets[{di}].person");
            match (composite, d.person_composite()) {
                (Some(x), None) => {
                    return self.fail(
                        at,
                        format!(
                            "`{person}` is one column, but the person of another dataset is the                              composite `{}` ({}): a person must be named the same way in every                              dataset (its shift, opt-out and fate follow that name); name it by                              the same parts here",
                            x.name,
                            x.inputs.join(" + ")
                        ),
                    );
                }
                (Some(x), Some(own)) if x.inputs.len() != own.inputs.len() => {
                    return self.fail(
                        at,
                        format!(
                            "the composite `{}` has {} parts and `{}` {}: a person must be named                              the same way in every dataset",
                            own.name,
                            own.inputs.len(),
                            x.name,
                            x.inputs.len()
                        ),
                    );
                }
                _ => {}
            }
            if let Some(own) = d.person_composite()
                && s.opt_out.is_some()
                && parts != Some(&own.inputs)
            {
                return self.fail(
                    "opt_out.parts".into(),
                    format!(
                        "the person of `{}` is the composite of {}: give them as parts = [{}], so                          that each entry names one person (not every twin sharing a number)",
                        d.name,
                        own.inputs.join(" + "),
                        own.inputs
                            .iter()
                            .map(|i| format!("\"{i}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if composite.is_none()
            && s.date_shift
                .as_ref()
                .is_some_and(|d| d.keyed_on == ShiftKeyedOn::FirstPart)
        {
            return self.fail(
                "date_shift.keyed_on".into(),
                "\"first_part\" draws shifts from the first part of a composite person, and no \
                 dataset's person is one: remove it"
                    .into(),
            );
        }
        if let (Some(o), None) = (&s.opt_out, composite)
            && o.parts.is_some()
        {
            return self.fail(
                "opt_out.parts".into(),
                "no dataset's person is a composite (person = the name of one of its \
                 composites): remove parts"
                    .into(),
            );
        }
        if let Some(o) = &s.opt_out
            && o.parts.is_some()
            && (o.pattern.is_some()
                || o.case_sensitive.is_some()
                || o.identifier != IdentifierSpec::default())
        {
            return self.fail(
                "opt_out.parts".into(),
                "each part is normalised as the person columns of its name: remove identifier, \
                 pattern and case_sensitive"
                    .into(),
            );
        }
        Ok(())
    }

    /// Each `derives_from` resolves, relates columns measurable in time, and can be delivered
    /// without releasing its source more finely than the source's table (at the coarsest level
    /// the derived column may take and the finest its source may; the run checks the levels the
    /// search chose).
    fn validate_derivations(&self) -> Result<()> {
        use super::derivation;
        let found = derivation::derivations(&self.spec).or_else(|(at, m)| self.fail(at, m))?;
        for d in &found {
            let derived_coarsest = derivation::levels(d.derived.1).1;
            let source_finest = derivation::levels(d.source.1).0;
            if let Some(m) = derivation::too_fine(d, derived_coarsest, source_finest) {
                return self.fail(d.at.clone(), m);
            }
        }
        Ok(())
    }

    /// In a permit that shifts dates, a person's date delivered unshifted beside their shifted
    /// ones (an admission year beside the shifted admission date) narrows their shift, in the same
    /// table or across tables: each needs the permit's reason.
    fn validate_unshifted(&self) -> Result<()> {
        let s = &self.spec;
        let columns = || {
            s.datasets.iter().enumerate().flat_map(|(di, d)| {
                d.columns
                    .iter()
                    .enumerate()
                    .map(move |(ci, c)| (di, d, ci, c))
            })
        };
        for (di, _, ci, c) in columns() {
            let at = format!("datasets[{di}].columns[{ci}].unshifted");
            match &c.unshifted {
                Some(reason) if reason.trim().is_empty() => {
                    return self.fail(at, "give the reason, or remove the key".into());
                }
                Some(_) if !c.column_type.is_temporal() => {
                    return self.fail(at, "belongs to a date, datetime or partial date".into());
                }
                _ => {}
            }
        }
        let Some((_, sd, _, shifted)) = columns().find(|(.., c)| c.action == Action::Shift) else {
            return Ok(());
        };
        let unshifted = columns().find(|(_, d, _, c)| {
            d.has_person()
                && c.column_type.is_temporal()
                && matches!(c.action, Action::Keep | Action::Generalise)
                && c.age_at.is_none()
                && c.unshifted.is_none()
        });
        match unshifted {
            None => Ok(()),
            Some((di, d, ci, c)) => self.fail(
                format!("datasets[{di}].columns[{ci}]"),
                format!(
                    "`{}.{}` would be delivered unshifted while `{}.{}` is shifted: a person's \
                     unshifted date beside their shifted ones narrows their shift; shift it (a \
                     year or year_month with part_of), drop it, or give unshifted = \"<reason>\" \
                     (a birth date released as a band, say)",
                    d.name, c.name, sd.name, shifted.name
                ),
            ),
        }
    }

    fn fail<T>(&self, at: String, message: String) -> Result<T> {
        Err(Error::Permit {
            file: self.path.clone(),
            at,
            message,
        })
    }

    /// The sections before the datasets: the permit's id, output, keys, domains and their
    /// contexts, date shifts, tokens and the opt-out list.
    fn validate_header(&self) -> Result<()> {
        let s = &self.spec;
        let fail = |at: String, message: String| self.fail(at, message);
        let safe_name = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };

        if !safe_name(&s.permit.id) {
            return fail(
                "permit.id".into(),
                "must be non-empty and use only letters, digits, `_`, `-`, `.`".into(),
            );
        }
        if s.output
            .keep_persons_suppressed_elsewhere
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return fail(
                "output.keep_persons_suppressed_elsewhere".into(),
                "give the reason suppressed persons may stay in the other datasets (it goes to the manifest), or remove the key".into(),
            );
        }
        if s.output.batch_rows == 0 {
            return fail("output.batch_rows".into(), "must be at least 1".into());
        }
        if ![128, 256].contains(&s.pseudonyms.bits) {
            return fail(
                "pseudonyms.bits".into(),
                format!("is {}; allowed: 128 or 256", s.pseudonyms.bits),
            );
        }
        for (name, k) in &s.keys {
            if k.file.is_some() == k.env.is_some() {
                return fail(
                    format!("keys.{name}"),
                    "give exactly one of `file` or `env`".into(),
                );
            }
        }
        // Contexts are bound to this permit: the property that two permits' pseudonyms cannot be
        // joined rests on their contexts, so a context naming another permit is refused.
        let own_context = |context: &str| {
            context
                .strip_prefix(s.permit.id.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty())
        };
        let context_rule = format!(
            "must start with this permit's id and a slash (`{}/…`): two permits' pseudonyms or \
             tokens must never be joinable",
            s.permit.id
        );
        for (name, d) in &s.domains {
            if !s.keys.contains_key(&d.key) {
                return fail(
                    format!("domains.{name}.key"),
                    format!("names key `{}`, not defined under [keys]", d.key),
                );
            }
            if d.context.as_deref().is_some_and(|c| !own_context(c)) {
                return fail(format!("domains.{name}.context"), context_rule);
            }
        }
        if s.tokens
            .as_ref()
            .and_then(|t| t.context.as_deref())
            .is_some_and(|c| !own_context(c))
        {
            return fail("tokens.context".into(), context_rule);
        }
        if let Some(ds) = &s.date_shift {
            if !s.domains.contains_key(&ds.domain) {
                return fail(
                    "date_shift.domain".into(),
                    format!("`{}` is not defined under [domains]", ds.domain),
                );
            }
            let pseudonym_domains = s.datasets.iter().flat_map(|d| {
                d.columns
                    .iter()
                    .filter_map(|c| c.domain.as_deref())
                    .chain(d.composites.iter().map(|x| x.domain.as_str()))
            });
            if pseudonym_domains.into_iter().any(|d| d == ds.domain) {
                return fail(
                    "date_shift.domain".into(),
                    format!(
                        "`{}` also makes pseudonyms; date shifts need a domain of their own",
                        ds.domain
                    ),
                );
            }
            if ds.min_days > ds.max_days || (ds.min_days, ds.max_days) == (0, 0) {
                return fail(
                    "date_shift".into(),
                    "need min_days ≤ max_days and at least one non-zero shift".into(),
                );
            }
            if ds.min_days < -36_500 || ds.max_days > 36_500 {
                return fail(
                    "date_shift".into(),
                    "shifts are limited to ±36,500 days".into(),
                );
            }
        }
        if let Some(t) = &s.tokens
            && !s.keys.contains_key(&t.key)
        {
            return fail(
                "tokens.key".into(),
                format!("names key `{}`, not defined under [keys]", t.key),
            );
        }
        if let Some(o) = &s.opt_out {
            check_pattern(o.identifier, o.pattern.as_deref(), "opt_out")
                .or_else(|m| fail("opt_out".into(), m))?;
        }
        Ok(())
    }

    /// One dataset: its name (unique in `names`), source, columns and composites.
    fn validate_dataset(
        &self,
        di: usize,
        d: &DatasetSpec,
        names: &mut HashSet<String>,
    ) -> Result<()> {
        let s = &self.spec;
        let fail = |at: String, message: String| self.fail(at, message);
        let at = |rest: &str| format!("datasets[{di}]{rest}");
        if !is_dataset_name(&d.name) {
            return fail(
                at(".name"),
                "must start with a letter or digit and use only ASCII letters, digits, `_` and \
                 `-`, at most 64 of them (it names the delivered file `<name>.parquet`)"
                    .into(),
            );
        }
        // Case folded: on a case-insensitive file system two such names are one file.
        if !names.insert(d.name.to_ascii_lowercase()) {
            return fail(
                at(".name"),
                format!(
                    "dataset `{}` is defined twice (names differing only in case are one file on some systems)",
                    d.name
                ),
            );
        }
        if d.max_rejected_share
            .is_some_and(|m| !(0.0..=1.0).contains(&m))
        {
            return fail(at(".max_rejected_share"), "must be between 0 and 1".into());
        }
        if d.allow_empty
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return fail(
                at(".allow_empty"),
                "give the reason this dataset may deliver no row, or remove the key".into(),
            );
        }
        if let Some(reason) = &d.read_only {
            let reads_it = |x: &DatasetSpec| {
                x.person_via.as_ref().is_some_and(|v| v.dataset == d.name)
                    || x.cohort.iter().any(|f| f.dataset.as_ref() == Some(&d.name))
                    || x.columns
                        .iter()
                        .any(|c| c.profile.as_ref().is_some_and(|p| p.dataset == d.name))
            };
            if reason.trim().is_empty() {
                return fail(
                    at(".read_only"),
                    "give the reason this dataset is read and not delivered, or remove the key"
                        .into(),
                );
            }
            if d.privacy.is_some()
                || !s
                    .datasets
                    .iter()
                    .any(|x| !std::ptr::eq(x, d) && reads_it(x))
            {
                return fail(
                    at(".read_only"),
                    "a read-only dataset has no privacy model and is read by another dataset (a \
                     profile attribute, a person-level cohort, person_via): none reads this one"
                        .into(),
                );
            }
        }
        self.validate_source(&d.source, &at(".source"))?;
        let mut cols = HashSet::new();
        let mut outputs = HashSet::new();
        for (ci, c) in d.columns.iter().enumerate() {
            let at = |rest: &str| format!("datasets[{di}].columns[{ci}]{rest}");
            if c.null_values.is_some() && d.source.format == SourceFormat::Linked {
                return fail(
                    at(".null_values"),
                    "a linked person table has no sentinels: it is built by `link`".into(),
                );
            }
            if c.unusual_dates.is_some()
                && (c.action != Action::Shift
                    || c.unusual_dates
                        .as_deref()
                        .is_some_and(|r| r.trim().is_empty()))
            {
                return fail(
                    at(".unusual_dates"),
                    "belongs to a shifted date column, with the reason its dates may look like sentinels".into(),
                );
            }
            if !cols.insert(c.name.as_str()) {
                return fail(
                    at(".name"),
                    format!("column `{}` is declared twice", c.name),
                );
            }
            if c.action != Action::Drop && !outputs.insert(c.output_name()) {
                return fail(
                    at(".rename"),
                    format!("two delivered columns are named `{}`", c.output_name()),
                );
            }
            self.validate_column(c, d.has_person())
                .or_else(|(field, m)| fail(at(&field), format!("column `{}`: {m}", c.name)))?;
        }
        if !d.columns.iter().any(|c| c.action != Action::Drop)
            && d.composites.is_empty()
            && d.clks.is_empty()
        {
            return fail(
                at(".columns"),
                "every column is dropped: the dataset would deliver nothing".into(),
            );
        }
        for (xi, x) in d.composites.iter().enumerate() {
            let at = |rest: &str| format!("datasets[{di}].composites[{xi}]{rest}");
            if !outputs.insert(x.name.as_str()) {
                return fail(
                    at(".name"),
                    format!("two delivered columns are named `{}`", x.name),
                );
            }
            if x.inputs.len() < 2 {
                return fail(
                    at(".inputs"),
                    "a composite needs at least two input columns".into(),
                );
            }
            for input in &x.inputs {
                if !cols.contains(input.as_str()) {
                    return fail(
                        at(".inputs"),
                        format!("`{input}` is not a declared column of this dataset"),
                    );
                }
            }
            if !s.domains.contains_key(&x.domain) {
                return fail(
                    at(".domain"),
                    format!("`{}` is not defined under [domains]", x.domain),
                );
            }
        }
        for (xi, x) in d.clks.iter().enumerate() {
            let at = |rest: &str| format!("datasets[{di}].clk[{xi}]{rest}");
            if !outputs.insert(x.name.as_str()) {
                return fail(
                    at(".name"),
                    format!("two delivered columns are named `{}`", x.name),
                );
            }
            for input in &x.columns {
                match d.columns.iter().find(|c| &c.name == input) {
                    None => {
                        return fail(
                            at(".columns"),
                            format!("`{input}` is not a declared column of this dataset"),
                        );
                    }
                    Some(c)
                        if !matches!(
                            c.column_type,
                            ColumnType::String | ColumnType::Date | ColumnType::Integer
                        ) =>
                    {
                        return fail(
                            at(".columns"),
                            format!(
                                "`{input}` must be declared `type = \"string\"` (or `date`, \
                                 read as its `YYYY-MM-DD` text, or `integer`): the linkage schema \
                                 reads and checks the text itself, as clkhash does"
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            if !s.keys.contains_key(&x.key) {
                return fail(
                    at(".key"),
                    format!("`{}` is not defined under [keys]", x.key),
                );
            }
        }
        self.validate_references(di, d, &cols)?;
        Ok(())
    }

    /// What a dataset's declarations refer to: its person column, the privacy models its
    /// quasi-identifiers need, the dates ages are computed at, the cohort's columns.
    fn validate_references(&self, di: usize, d: &DatasetSpec, cols: &HashSet<&str>) -> Result<()> {
        let s = &self.spec;
        let fail = |at: String, message: String| self.fail(at, message);
        let at = |rest: &str| format!("datasets[{di}]{rest}");
        if let (Some(o), Some(p), None) = (&s.opt_out, &d.person, d.person_composite()) {
            let person_case = d
                .columns
                .iter()
                .find(|c| &c.name == p)
                .and_then(|c| c.case_sensitive)
                .unwrap_or(false);
            if person_case != o.case_sensitive.unwrap_or(false) {
                return fail(
                    at(".person"),
                    format!(
                        "the person column `{p}` and the opt-out list must agree on \
                         case_sensitive: otherwise a listed person spelt in another case would be \
                         delivered"
                    ),
                );
            }
        }
        if let Some(via) = &d.person_via {
            self.validate_person_via(d, via)
                .or_else(|(field, m)| fail(at(&format!(".person_via{field}")), m))?;
        }
        match &d.person {
            Some(_) if d.person_via.is_some() => {
                return fail(
                    at(".person"),
                    "give `person` or `person_via`, not both".into(),
                );
            }
            Some(p) if !cols.contains(p.as_str()) && d.person_composite().is_none() => {
                return fail(
                    at(".person"),
                    format!(
                        "`{p}` is not a declared column of this dataset, nor one of its composites"
                    ),
                );
            }
            None if s.opt_out.is_some() && d.person_via.is_none() => {
                return fail(
                    at(".person"),
                    "an opt-out list is set: every dataset must name its person column".into(),
                );
            }
            _ => {}
        }
        let qis: Vec<&ColumnSpec> = d
            .columns
            .iter()
            .filter(|c| c.is_quasi_identifier())
            .collect();
        if let Some(within) = d.set_valued.as_ref().and_then(|sv| sv.within.as_deref()) {
            validate_within(s, d, within).or_else(|m| fail(at(".set_valued.within"), m))?;
        }
        if let Some(sv) = &d.set_valued {
            validate_set_valued(sv, d)
                .or_else(|(field, m)| fail(at(&format!(".set_valued.{field}")), m))?;
        }
        match &d.privacy {
            // An error of the whole section has no field of its own.
            Some(p) => validate_privacy(p, d).or_else(|(field, m)| {
                let field = if field.is_empty() {
                    field
                } else {
                    format!(".{field}")
                };
                fail(at(&format!(".privacy{field}")), m)
            })?,
            None if d.set_valued.is_some() => {}
            None if !qis.is_empty() => {
                return fail(
                    at(".privacy"),
                    format!(
                        "`{}` is a quasi-identifier (it has `hierarchy` or `levels`): add [datasets.privacy] with the models it must meet",
                        qis[0].name
                    ),
                );
            }
            None => {}
        }
        for (ci, c) in d.columns.iter().enumerate() {
            let Some(at_column) = &c.age_at else { continue };
            let literal = chrono::NaiveDate::parse_from_str(at_column, "%Y-%m-%d").is_ok();
            let column = d.columns.iter().find(|r| &r.name == at_column);
            let is_date = column
                .is_some_and(|r| matches!(r.column_type, ColumnType::Date | ColumnType::Datetime));
            if !literal && !is_date {
                return fail(
                    format!("datasets[{di}].columns[{ci}].age_at"),
                    format!(
                        "`{at_column}` is neither a declared date column of this dataset nor a date YYYY-MM-DD"
                    ),
                );
            }
        }
        for (ci, c) in d.columns.iter().enumerate() {
            for (wi, w) in c.valid_when.iter().flatten().enumerate() {
                let at = format!("datasets[{di}].columns[{ci}].valid_when[{wi}]");
                if w.column == c.name || !cols.contains(w.column.as_str()) {
                    return fail(
                        at + ".column",
                        format!(
                            "`{}` is not another declared column of this dataset (declare it, with \
                             action = \"drop\" if it is not delivered)",
                            w.column
                        ),
                    );
                }
                if w.values.is_empty() {
                    return fail(
                        at + ".values",
                        "list the values that make the row valid".into(),
                    );
                }
            }
        }
        for (ci, c) in d.columns.iter().enumerate() {
            let Some(date) = &c.part_of else { continue };
            let is_date = d.columns.iter().any(|x| {
                &x.name == date && matches!(x.column_type, ColumnType::Date | ColumnType::Datetime)
            });
            if !is_date {
                return fail(
                    format!("datasets[{di}].columns[{ci}].part_of"),
                    format!("`{date}` is not a declared date or datetime column of this dataset"),
                );
            }
        }
        for (ci, c) in d.columns.iter().enumerate() {
            if let Some(p) = &c.profile {
                self.validate_profile(d, c, p)
                    .or_else(|m| fail(format!("datasets[{di}].columns[{ci}].profile"), m))?;
            }
        }
        for (fi, f) in d.cohort.iter().enumerate() {
            let at = format!("datasets[{di}].cohort[{fi}]");
            let of = match &f.dataset {
                None => d,
                Some(name) => self
                    .person_cohort_dataset(d, name)
                    .or_else(|m| self.fail(format!("{at}.dataset"), m))?,
            };
            let Some(col) = of.columns.iter().find(|c| c.name == f.column) else {
                return fail(
                    at + ".column",
                    format!(
                        "`{}` is not a declared column of dataset `{}`",
                        f.column, of.name
                    ),
                );
            };
            validate_filter(f, col).or_else(|m| fail(at.clone(), m))?;
            validate_cohort_value(f, col).or_else(|m| fail(at + ".on", m))?;
        }
        Ok(())
    }

    /// A table that reaches its person through a join key: to a dataset of the permit, read from
    /// files, that names its person column; the key's columns declared in both; the person, if
    /// delivered, pseudonymised in a domain of the permit.
    fn validate_person_via(
        &self,
        d: &DatasetSpec,
        via: &PersonViaSpec,
    ) -> std::result::Result<(), (String, String)> {
        let err = |field: &str, m: String| Err((field.to_string(), m));
        let Some(parent) = self.spec.datasets.iter().find(|x| x.name == via.dataset) else {
            return err(
                ".dataset",
                format!("`{}` is not a dataset of this permit", via.dataset),
            );
        };
        if parent.person.is_none() || parent.source.format == SourceFormat::Linked {
            return err(
                ".dataset",
                format!(
                    "`{}` must name its person column and be read from files (no chains of \
                     person_via)",
                    via.dataset
                ),
            );
        }
        if via.keys.is_empty() {
            return err(".keys", "list the join key's columns".into());
        }
        for key in &via.keys {
            for x in [d, parent] {
                if !x.columns.iter().any(|c| &c.name == key) {
                    return err(
                        ".keys",
                        format!("`{key}` is not a declared column of dataset `{}`", x.name),
                    );
                }
            }
        }
        match (&via.deliver_as, &via.domain) {
            (None, None) => Ok(()),
            (Some(name), Some(domain)) => {
                if !self.spec.domains.contains_key(domain) {
                    return err(
                        ".domain",
                        format!("`{domain}` is not defined under [domains]"),
                    );
                }
                if d.columns
                    .iter()
                    .any(|c| c.action != Action::Drop && c.output_name() == name)
                {
                    return err(
                        ".deliver_as",
                        format!("two delivered columns are named `{name}`"),
                    );
                }
                Ok(())
            }
            _ => err(
                ".deliver_as",
                "give deliver_as and domain together: the person is delivered only as a pseudonym"
                    .into(),
            ),
        }
    }

    /// A person-level attribute of `d` drawn from another dataset of the same persons: an
    /// aggregate that suits its column and its own type, and a column the other dataset does not
    /// deliver more finely than the attribute (a shifted date is accepted; a code column is not
    /// delivered at all, or it would show who has the codes).
    fn validate_profile(
        &self,
        d: &DatasetSpec,
        c: &ColumnSpec,
        p: &ProfileSpec,
    ) -> std::result::Result<(), String> {
        if !d.has_person() || d.source.format == SourceFormat::Linked {
            return Err(
                "a profile attribute belongs to a dataset of persons read from files: name its \
                 `person`"
                    .into(),
            );
        }
        let of = self.person_cohort_dataset(d, &p.dataset)?;
        if std::ptr::eq(of, d) || of.columns.iter().any(|x| x.profile.is_some()) {
            return Err(format!(
                "`{}` must be another dataset, with no profile attribute of its own",
                p.dataset
            ));
        }
        let Some(source) = of.columns.iter().find(|x| x.name == p.column) else {
            return Err(format!(
                "`{}` is not a declared column of dataset `{}`",
                p.column, p.dataset
            ));
        };
        let fits = match p.aggregate {
            Aggregate::First | Aggregate::Last => {
                matches!(source.column_type, ColumnType::Date | ColumnType::Datetime)
                    && c.column_type == ColumnType::Date
                    && p.prefixes.is_none()
            }
            Aggregate::Has => {
                source.column_type == ColumnType::String
                    && c.column_type == ColumnType::Boolean
                    && p.prefixes.as_ref().is_some_and(|x| !x.is_empty())
            }
            Aggregate::Count => c.column_type == ColumnType::Integer && p.prefixes.is_none(),
        };
        if !fits {
            return Err(
                "`first` and `last` read a date or datetime column into a `date` one; `has` reads \
                 a string column with `prefixes` into a `boolean` one; `count` any column into an \
                 `integer` one"
                    .into(),
            );
        }
        if p.aggregate == Aggregate::Count && of.read_only.is_none() {
            return Err(format!(
                "`{}` is delivered, and its rows show each person's count exactly: give it \
                 read_only = \"<reason>\" to read it for the profile only",
                p.dataset
            ));
        }
        if p.aggregate == Aggregate::Has && source.action != Action::Drop && of.read_only.is_none()
        {
            return Err(format!(
                "`{}.{}` is delivered, which shows exactly who has these codes: drop it there",
                p.dataset, p.column
            ));
        }
        if c.null_values.is_some() || c.valid_when.is_some() || c.format.is_some() {
            return Err(
                "the engine computes this column: it takes no null_values, valid_when or format"
                    .into(),
            );
        }
        Ok(())
    }

    /// The dataset a person-level cohort condition of `d` reads: another (or the same) dataset of
    /// the permit, read from files, whose persons match `d`'s (both name their person column, and
    /// spell identifiers alike).
    fn person_cohort_dataset(
        &self,
        d: &DatasetSpec,
        name: &str,
    ) -> std::result::Result<&DatasetSpec, String> {
        let Some(of) = self.spec.datasets.iter().find(|x| x.name == name) else {
            return Err(format!("`{name}` is not a dataset of this permit"));
        };
        if of.source.format == SourceFormat::Linked {
            return Err(format!(
                "`{name}` is the linked person table, built by the run itself"
            ));
        }
        let case = |x: &DatasetSpec| {
            let x = match &x.person_via {
                Some(via) => self.spec.datasets.iter().find(|p| p.name == via.dataset)?,
                None => x,
            };
            let parts = x.person_columns();
            let columns = parts
                .iter()
                .map(|p| x.columns.iter().find(|c| c.name == *p))
                .collect::<Option<Vec<_>>>()?;
            Some(
                columns
                    .iter()
                    .map(|c| c.case_sensitive.unwrap_or(false))
                    .collect::<Vec<bool>>(),
            )
        };
        match (case(d), case(of)) {
            (Some(a), Some(b)) if a == b => Ok(of),
            (Some(_), Some(_)) => Err(format!(
                "persons are matched by identifier: the person columns of `{}` and `{name}` must \
                 be the same number of parts and agree on case_sensitive",
                d.name
            )),
            _ => Err(format!(
                "persons are matched by identifier: `{}` and `{name}` must both name their person \
                 column",
                d.name
            )),
        }
    }

    fn validate_source(&self, src: &SourceSpec, at: &str) -> Result<()> {
        let fail = |field: &str, message: String| self.fail(format!("{at}.{field}"), message);
        if src.format == SourceFormat::Linked {
            if self.spec.linkage.is_none() {
                return fail(
                    "format",
                    "\"linked\" reads the person table of `ehds-prep link`: add a [linkage] section"
                        .into(),
                );
            }
            if !src.files.is_empty() {
                return fail(
                    "files",
                    "a linked source has no files: `ehds-prep link` builds it".into(),
                );
            }
            return Ok(());
        }
        if src.format == SourceFormat::Postgres {
            return self.validate_postgres_source(src, at);
        }
        for (field, set) in [
            ("connection_env", src.connection_env.is_some()),
            ("connection_file", src.connection_file.is_some()),
            ("query", src.query.is_some()),
            ("table", src.table.is_some()),
            ("sslrootcert", src.sslrootcert.is_some()),
        ] {
            if set {
                return fail(field, "only a `format = \"postgres\"` source has it".into());
            }
        }
        if src.files.is_empty() {
            return fail("files", "at least one source file is required".into());
        }
        if !src.delimiter.is_ascii() || src.delimiter == '\n' || src.delimiter == '\r' {
            return fail(
                "delimiter",
                "must be one ASCII character other than a line break".into(),
            );
        }
        if src.quote.len() > 1 || !src.quote.is_ascii() {
            return fail(
                "quote",
                "must be one ASCII character, or \"\" for none".into(),
            );
        }
        if src.quote.starts_with(src.delimiter) {
            return fail("quote", "must differ from the delimiter".into());
        }
        if !matches!(src.decimal, '.' | ',') {
            return fail("decimal", "the decimal separator is \".\" or \",\"".into());
        }
        check_date_format(&src.date_format, false).or_else(|m| fail("date_format", m))?;
        check_date_format(&src.datetime_format, true).or_else(|m| fail("datetime_format", m))
    }

    /// A PostgreSQL source: where its connection string is, what it reads, and one database
    /// (one snapshot) for every PostgreSQL source of the permit.
    fn validate_postgres_source(&self, src: &SourceSpec, at: &str) -> Result<()> {
        let fail = |field: &str, message: &str| self.fail(format!("{at}.{field}"), message.into());
        if !src.files.is_empty() {
            return fail(
                "files",
                "a PostgreSQL source has no files: give `query` or `table`",
            );
        }
        if src.connection_env.is_some() == src.connection_file.is_some() {
            return fail(
                "connection_env",
                "give exactly one of `connection_env` (an environment variable) and \
                 `connection_file` (a file readable by its owner only) holding the connection \
                 string; never the string itself",
            );
        }
        if src
            .connection_env
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.contains(['=', '\0']))
        {
            return fail("connection_env", "must name an environment variable");
        }
        match (&src.query, &src.table) {
            (Some(_), Some(_)) | (None, None) => {
                return fail("query", "give exactly one of `query` and `table`");
            }
            (Some(q), None) if q.trim().is_empty() || q.contains(';') => {
                return fail(
                    "query",
                    "must be one SELECT statement, without `;` (it is read as a subquery, in a \
                     read-only transaction)",
                );
            }
            (None, Some(t)) if !is_table_name(t) => {
                return fail(
                    "table",
                    "must be `table` or `schema.table`, each a name of letters, digits, `_` and \
                     `$` not starting with a digit (matched exactly, case included)",
                );
            }
            _ => {}
        }
        let first = self
            .spec
            .datasets
            .iter()
            .map(|d| &d.source)
            .find(|s| s.format == SourceFormat::Postgres)
            .expect("this source is one");
        if (
            &first.connection_env,
            &first.connection_file,
            first.sslmode,
            &first.sslrootcert,
        ) != (
            &src.connection_env,
            &src.connection_file,
            src.sslmode,
            &src.sslrootcert,
        ) {
            return fail(
                "connection_env",
                "every PostgreSQL source of a permit reads the same database (one snapshot for \
                 the whole run): give them the same connection, sslmode and sslrootcert",
            );
        }
        Ok(())
    }

    /// Checks one column's declaration; the error names the offending field (as `.field`).
    fn validate_column(&self, c: &ColumnSpec, has_person: bool) -> Result<(), (String, String)> {
        check_options_belong(c)?;
        check_column_type(c)?;
        self.validate_action(c, has_person)
    }

    /// What the column's action needs: its domain, the permit's sections, a type it applies to.
    fn validate_action(&self, c: &ColumnSpec, has_person: bool) -> Result<(), (String, String)> {
        let s = &self.spec;
        let err = |field: &str, message: String| Err((format!(".{field}"), message));
        let a = c.action;
        let text_like = matches!(c.column_type, ColumnType::String | ColumnType::Text);
        match a {
            Action::Keep | Action::Drop | Action::Blank => {}
            Action::Pseudonymise => {
                let Some(domain) = &c.domain else {
                    return err(
                        "domain",
                        "a pseudonymised column needs `domain`, one of [domains]".into(),
                    );
                };
                if !s.domains.contains_key(domain) {
                    return err(
                        "domain",
                        format!("`{domain}` is not defined under [domains]"),
                    );
                }
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "pseudonymised columns must be declared as type \"string\"".into(),
                    );
                }
            }
            Action::Tokenise => {
                if s.tokens.is_none() {
                    return err(
                        "action",
                        "reversible tokens are off: the permit must opt in with a [tokens] section"
                            .into(),
                    );
                }
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "tokenised columns must be declared as type \"string\"".into(),
                    );
                }
            }
            Action::Generalise if c.is_quasi_identifier() => {
                validate_quasi_identifier(c).map_err(|(f, m)| (format!(".{f}"), m))?;
            }
            Action::Generalise => validate_generalise_rule(c)?,
            Action::Shift => {
                if !c.column_type.is_temporal() {
                    return err(
                        "action",
                        "only date, datetime and partial date (year, year_month) columns can be \
                         shifted"
                            .into(),
                    );
                }
                if c.column_type.is_partial_date() != c.part_of.is_some() {
                    return err(
                        "part_of",
                        "a shifted year or year_month is the year (month) of a date of the same \
                         row, shifted with it: give part_of = \"<that date column>\"; only a \
                         partial date takes part_of"
                            .into(),
                    );
                }
                if s.date_shift.is_none() {
                    return err(
                        "action",
                        "shifting dates needs a [date_shift] section (domain, min_days, max_days)"
                            .into(),
                    );
                }
                if !has_person {
                    return err(
                        "action",
                        "shifting dates needs the dataset's `person` (or `person_via`): shifts are \
                         per person"
                            .into(),
                    );
                }
            }
            Action::Mask => {
                if !text_like {
                    return err(
                        "action",
                        "only string and text columns can be masked".into(),
                    );
                }
                if c.keep_first.is_none() && c.keep_last.is_none() {
                    return err(
                        "keep_first",
                        "masking needs `keep_first` and/or `keep_last` (characters kept)".into(),
                    );
                }
            }
            Action::Replace => {
                if !text_like {
                    return err(
                        "action",
                        "only string and text columns can be replaced".into(),
                    );
                }
                if c.value.is_none() {
                    return err(
                        "value",
                        "`replace` needs `value`, the constant written instead".into(),
                    );
                }
            }
            Action::Map => {
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "mapped columns must be declared as type \"string\"".into(),
                    );
                }
                if c.dictionary.is_none() {
                    return err(
                        "dictionary",
                        "`map` needs `dictionary`, a CSV file of `from,to` lines".into(),
                    );
                }
                let fallback = c.on_unmapped == Some(UnmappedPolicy::Fallback);
                if fallback != c.fallback.is_some() {
                    return err(
                        "fallback",
                        "give `fallback` exactly when on_unmapped = \"fallback\"".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Each option belongs to some actions only.
fn check_options_belong(c: &ColumnSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((format!(".{field}"), message));
    let a = c.action;
    let options: [(&str, bool, &[Action]); 22] = [
        ("domain", c.domain.is_some(), &[Action::Pseudonymise]),
        (
            "on_invalid",
            c.on_invalid.is_some(),
            &[Action::Pseudonymise, Action::Tokenise],
        ),
        (
            "on_missing",
            c.on_missing.is_some(),
            &[Action::Pseudonymise, Action::Tokenise],
        ),
        ("rule", c.rule.is_some(), &[Action::Generalise]),
        ("prefix", c.prefix.is_some(), &[Action::Generalise]),
        ("hierarchy", c.hierarchy.is_some(), &[Action::Generalise]),
        (
            "hierarchy_delimiter",
            c.hierarchy_delimiter.is_some(),
            &[Action::Generalise],
        ),
        ("levels", c.levels.is_some(), &[Action::Generalise]),
        ("age_at", c.age_at.is_some(), &[Action::Generalise]),
        ("top", c.top.is_some(), &[Action::Generalise]),
        ("bottom", c.bottom.is_some(), &[Action::Generalise]),
        ("max_level", c.max_level.is_some(), &[Action::Generalise]),
        ("level", c.level.is_some(), &[Action::Generalise]),
        ("keep_first", c.keep_first.is_some(), &[Action::Mask]),
        ("keep_last", c.keep_last.is_some(), &[Action::Mask]),
        ("mask_char", c.mask_char.is_some(), &[Action::Mask]),
        ("value", c.value.is_some(), &[Action::Replace]),
        ("dictionary", c.dictionary.is_some(), &[Action::Map]),
        ("on_unmapped", c.on_unmapped.is_some(), &[Action::Map]),
        ("fallback", c.fallback.is_some(), &[Action::Map]),
        ("part_of", c.part_of.is_some(), &[Action::Shift]),
        (
            "unshifted",
            c.unshifted.is_some(),
            &[Action::Keep, Action::Generalise],
        ),
    ];
    for (field, present, actions) in options {
        if present && !actions.contains(&a) {
            let names: Vec<String> = actions
                .iter()
                .map(|a| format!("\"{a:?}\"").to_lowercase())
                .collect();
            return err(
                field,
                format!(
                    "`{field}` is only allowed with action = {}",
                    names.join(" or ")
                ),
            );
        }
    }
    Ok(())
}

/// The options that depend on the column's type: date formats, identifier patterns, free text.
fn check_column_type(c: &ColumnSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((format!(".{field}"), message));
    let a = c.action;
    let temporal = matches!(c.column_type, ColumnType::Date | ColumnType::Datetime);
    match c.decimal {
        Some(_) if c.column_type != ColumnType::Float => {
            return err(
                "decimal",
                "`decimal` is only allowed on float columns".into(),
            );
        }
        Some(d) if !matches!(d, '.' | ',') => {
            return err("decimal", "the decimal separator is \".\" or \",\"".into());
        }
        _ => {}
    }
    if let Some(f) = &c.format {
        if !temporal {
            return err(
                "format",
                "`format` is only allowed on date and datetime columns".into(),
            );
        }
        check_date_format(f, c.column_type == ColumnType::Datetime)
            .map_err(|m| (".format".to_string(), m))?;
    }
    check_pattern(
        c.identifier.unwrap_or_default(),
        c.pattern.as_deref(),
        "column",
    )
    .map_err(|m| (".pattern".to_string(), m))?;
    if c.case_sensitive == Some(true)
        && matches!(c.identifier.unwrap_or_default(), IdentifierSpec::Nir)
    {
        return err(
            "case_sensitive",
            "a NIR has no letters but 2A/2B, always upper case: case_sensitive is for identifier = \"pattern\" or \"any\"".into(),
        );
    }
    if c.identifier.is_some() && c.column_type != ColumnType::String {
        return err(
            "identifier",
            "identifiers must be declared as type \"string\"".into(),
        );
    }
    let free_text = c.column_type == ColumnType::Text;
    if c.reason.is_some() && !free_text {
        return err(
            "reason",
            "`reason` is only allowed on free-text columns (type = \"text\")".into(),
        );
    }
    if free_text {
        if !matches!(
            a,
            Action::Drop | Action::Keep | Action::Mask | Action::Replace | Action::Blank
        ) {
            return err(
                "action",
                "a free-text column can be dropped, kept, masked, replaced or blanked".into(),
            );
        }
        if a != Action::Drop && c.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return err(
                "reason",
                "free text is dropped unless the permit states why it is delivered: add `reason`"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A generalised column that is not a quasi-identifier: one fixed rule for its type.
fn validate_generalise_rule(c: &ColumnSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((format!(".{field}"), message));
    for (field, present) in [
        ("hierarchy_delimiter", c.hierarchy_delimiter.is_some()),
        ("age_at", c.age_at.is_some()),
        ("top", c.top.is_some()),
        ("bottom", c.bottom.is_some()),
        ("max_level", c.max_level.is_some()),
        ("level", c.level.is_some()),
    ] {
        if present {
            return err(
                field,
                format!("`{field}` belongs to a quasi-identifier: give `hierarchy` or `levels`"),
            );
        }
    }
    let allowed = match c.column_type {
        ColumnType::Date | ColumnType::Datetime => {
            &[GeneraliseRule::Year, GeneraliseRule::Month][..]
        }
        ColumnType::YearMonth => &[GeneraliseRule::Year][..],
        ColumnType::String => &[GeneraliseRule::Prefix][..],
        _ => &[][..],
    };
    match c.rule {
        None => {
            return err("rule", "a generalised column needs `rule` (\"year\" or \"month\" for dates, \"prefix\" for strings), or, as a quasi-identifier, `hierarchy` or `levels`".into());
        }
        Some(r) if !allowed.contains(&r) => {
            return err(
                "rule",
                format!(
                    "rule {r:?} does not apply to a {:?} column; allowed: {allowed:?}",
                    c.column_type
                ),
            );
        }
        Some(GeneraliseRule::Prefix) if c.prefix.unwrap_or(0) == 0 => {
            return err(
                "prefix",
                "rule \"prefix\" needs `prefix`, the number of characters kept (≥ 1)".into(),
            );
        }
        Some(r) if r != GeneraliseRule::Prefix && c.prefix.is_some() => {
            return err(
                "prefix",
                "`prefix` is only allowed with rule = \"prefix\"".into(),
            );
        }
        _ => {}
    }
    Ok(())
}

/// A dataset name that makes a file name of its own: it cannot be hidden (`.x`), hold a path, or
/// collide with the engine's own files (`manifest.json`, `.<name>.pass1.arrow` spills…), which
/// all have a dot where a dataset's name cannot.
fn is_dataset_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a quasi-identifier's hierarchy options; the error names the offending field.
fn validate_quasi_identifier(c: &ColumnSpec) -> Result<(), (String, String)> {
    use crate::kernels::levels::{LevelRule, ValueKind};
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if c.rule.is_some() || c.prefix.is_some() {
        return err(
            "rule",
            "a quasi-identifier's levels come from `hierarchy` or `levels`, not `rule`/`prefix`"
                .into(),
        );
    }
    if c.hierarchy.is_some() == c.levels.is_some() {
        return err(
            "levels",
            "give exactly one of `hierarchy` (a file) or `levels`".into(),
        );
    }
    if c.hierarchy_delimiter.is_some() && c.hierarchy.is_none() {
        return err(
            "hierarchy_delimiter",
            "only allowed with `hierarchy`".into(),
        );
    }
    let temporal = matches!(c.column_type, ColumnType::Date | ColumnType::Datetime);
    if let Some(at) = &c.age_at {
        if !temporal {
            return err(
                "age_at",
                "an age is computed from a date or datetime column".into(),
            );
        }
        if at.trim().is_empty() {
            return err(
                "age_at",
                "name a date column or give a date as YYYY-MM-DD".into(),
            );
        }
    }
    if matches!(
        c.column_type,
        ColumnType::Text | ColumnType::Year | ColumnType::YearMonth
    ) {
        return err(
            "type",
            "quasi-identifiers are string, integer, float, boolean, date or datetime columns (a partial \
             date can be kept, shifted with its date, or generalised with rule = \"year\")"
                .into(),
        );
    }
    let value_kind = match c.column_type {
        _ if c.age_at.is_some() => ValueKind::Number,
        ColumnType::Date | ColumnType::Datetime => ValueKind::Date,
        ColumnType::Integer | ColumnType::Float => ValueKind::Number,
        _ => ValueKind::Text,
    };
    if let Some(levels) = &c.levels {
        if levels.is_empty() {
            return err("levels", "list at least one level (e.g. [\"year\"])".into());
        }
        for (i, text) in levels.iter().enumerate() {
            let rule = LevelRule::parse(text).map_err(|m| ("levels".to_string(), m))?;
            let kind = rule.applies_to();
            if kind != ValueKind::Any && kind != value_kind {
                return err(
                    "levels",
                    format!(
                        "level `{text}` applies to {kind:?} values; this column's are {value_kind:?}"
                    ),
                );
            }
            if rule == LevelRule::Top && i + 1 != levels.len() {
                return err("levels", "`*` can only be the last level".into());
            }
        }
    }
    if c.top.is_some() || c.bottom.is_some() {
        if value_kind != ValueKind::Number || c.levels.is_none() {
            return err(
                "top",
                "`top`/`bottom` code numbers (and ages) with built-in levels".into(),
            );
        }
        if let (Some(b), Some(t)) = (c.bottom, c.top)
            && b >= t
        {
            return err("bottom", "`bottom` must be below `top`".into());
        }
    }
    if let (Some(level), Some(max)) = (c.level, c.max_level)
        && level > max
    {
        return err(
            "level",
            format!("pinned level {level} is above max_level {max}"),
        );
    }
    Ok(())
}

/// A set-valued attribute: one generalised text column of an event dataset of persons, alone in
/// being generalised by a search (the dataset's rows are events, so row-level quasi-identifiers
/// belong to the person's own table).
fn validate_set_valued(sv: &SetValuedSpec, d: &DatasetSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if d.privacy.is_some() {
        return err(
            "column",
            "a dataset with set_valued has no [datasets.privacy]: its rows are events, so the \
             person's row-level quasi-identifiers belong in the person's own table"
                .into(),
        );
    }
    if !d.has_person() {
        return err(
            "column",
            "the codes are gathered per person: give the dataset a `person` (or `person_via`)"
                .into(),
        );
    }
    match d.columns.iter().find(|c| c.name == sv.column) {
        None => {
            return err(
                "column",
                format!("`{}` is not a declared column", sv.column),
            );
        }
        Some(c) if !c.is_quasi_identifier() || c.level.is_some() => {
            return err(
                "column",
                format!(
                    "`{}` must be generalised (action = \"generalise\") with `levels` or a \
                     `hierarchy`, and no pinned `level`: the search chooses how each code is released",
                    sv.column
                ),
            );
        }
        Some(c) if !matches!(c.column_type, ColumnType::String) || c.profile.is_some() => {
            return err(
                "column",
                format!(
                    "`{}` must be a string column of codes read from the source",
                    sv.column
                ),
            );
        }
        Some(_) => {}
    }
    if let Some(other) = d
        .columns
        .iter()
        .find(|c| c.is_quasi_identifier() && c.name != sv.column)
    {
        return err(
            "column",
            format!(
                "`{}` is a quasi-identifier too: a dataset with set_valued generalises its set \
                 column alone (give `{}` a fixed `rule`, or move it to the person's table)",
                other.name, other.name
            ),
        );
    }
    if sv.k < 2 {
        return err("k", "must be at least 2".into());
    }
    if !(1..=MAX_SET_VALUED_M).contains(&sv.m) {
        return err("m", format!("must be 1 to {MAX_SET_VALUED_M}"));
    }
    if !(0.0..=1.0).contains(&sv.suppression_limit) {
        return err("suppression_limit", "must be between 0 and 1".into());
    }
    Ok(())
}

/// The dataset a set-valued attribute is counted within: another delivered dataset of the same
/// persons with its own privacy models.
fn validate_within(spec: &PermitSpec, d: &DatasetSpec, within: &str) -> Result<(), String> {
    let Some(w) = spec.datasets.iter().find(|x| x.name == within) else {
        return Err(format!("`{within}` is not a dataset of the permit"));
    };
    if w.name == d.name || w.privacy.is_none() || w.read_only.is_some() || !w.has_person() {
        return Err(format!(
            "`{within}` must be another delivered dataset of the same persons with \
             [datasets.privacy] (its classes are what the sets are counted within)"
        ));
    }
    Ok(())
}

fn validate_privacy(p: &PrivacySpec, d: &DatasetSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if !d.columns.iter().any(ColumnSpec::is_quasi_identifier) {
        return err(
            "",
            "no quasi-identifier: give some generalised column a `hierarchy` or `levels`".into(),
        );
    }
    if p.k.is_none()
        && p.l.is_none()
        && p.t.is_none()
        && p.average_risk.is_none()
        && p.sample_uniqueness.is_none()
        && p.k_map.is_none()
        && p.population_uniqueness.is_none()
        && p.delta_presence.is_none()
    {
        return err(
            "",
            "give at least one model: `k`, `k_map`, `l`, `t`, `average_risk`, \
             `sample_uniqueness`, `population_uniqueness` or `delta_presence`"
                .into(),
        );
    }
    if let Some(b) = &p.search_budget {
        if b.nodes.is_none() && b.seconds.is_none() {
            return err("search_budget", "give `nodes`, `seconds` or both".into());
        }
        if b.nodes == Some(0) {
            return err("search_budget.nodes", "must be at least 1".into());
        }
        if let Some(s) = b.seconds
            && !(s > 0.0 && s.is_finite())
        {
            return err("search_budget.seconds", "must be above 0".into());
        }
    }
    if let Some(m) = &p.k_map {
        if m.k == 0 {
            return err("k_map.k", "must be at least 1".into());
        }
        if m.population == Some(0) {
            return err("k_map.population", "must be at least 1 person".into());
        }
        if m.population.is_none() && p.research_subset.is_none() {
            return err(
                "k_map",
                "give `population` (its size, for an estimate) or a `research_subset` (the \
                 delivered rows, the dataset being the population)"
                    .into(),
            );
        }
        if !(m.significance > 0.0 && m.significance < 1.0) {
            return err(
                "k_map.significance",
                "is a probability, above 0 and below 1".into(),
            );
        }
    }
    // Bounds that are probabilities (above 0, at most 1) or shares of rows (0 to 1).
    let probability = |field: &str, v: f64| {
        if v > 0.0 && v <= 1.0 {
            Ok(())
        } else {
            err(field, "is a probability, above 0 and at most 1".into())
        }
    };
    let share_of_rows = |field: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            err(field, "is a share of rows, from 0 to 1".into())
        }
    };
    match p.average_risk {
        Some(AverageRiskSpec::Average(a)) => probability("average_risk", a)?,
        Some(AverageRiskSpec::Bounds(b)) => {
            probability("average_risk.average", b.average)?;
            probability("average_risk.highest", b.highest)?;
            share_of_rows("average_risk.records_at_risk", b.records_at_risk)?;
        }
        None => {}
    }
    if let Some(u) = p.sample_uniqueness {
        share_of_rows("sample_uniqueness", u)?;
    }
    if let Some(d) = &p.delta_presence {
        if p.research_subset.is_none() {
            return err(
                "delta_presence",
                "needs a `research_subset`: the delivered rows, whose share of each class of the \
                 dataset it bounds"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&d.min) || !(0.0..=1.0).contains(&d.max) || d.min > d.max {
            return err(
                "delta_presence",
                "`min` and `max` are shares from 0 to 1, `min` at most `max`".into(),
            );
        }
    }
    if let Some(u) = &p.population_uniqueness {
        probability("population_uniqueness.threshold", u.threshold)?;
        if u.population == 0 {
            return err(
                "population_uniqueness.population",
                "must be at least 1 person".into(),
            );
        }
    }
    if p.k == Some(0) {
        return err("k", "must be at least 1".into());
    }
    share_of_rows("suppression_limit", p.suppression_limit)?;
    if let Some(r) = p.risk_threshold {
        probability("risk_threshold", r)?;
    }
    if let Some(l) = p.l
        && !(l >= 1.0 && l.is_finite())
    {
        return err("l", "must be at least 1".into());
    }
    if p.l_diversity != LDiversityKind::Entropy
        && let Some(l) = p.l
        && l.fract() != 0.0
    {
        return err(
            "l",
            "distinct and recursive ℓ-diversity need a whole ℓ".into(),
        );
    }
    match (
        p.l_diversity == LDiversityKind::Recursive && p.l.is_some(),
        p.c,
    ) {
        (true, None) => {
            return err(
                "c",
                "recursive (c,ℓ)-diversity needs `c` (the most frequent value must be rarer than \
                 c times the rest beyond the ℓ − 1 most frequent)"
                    .into(),
            );
        }
        (true, Some(c)) if !(c > 0.0 && c.is_finite()) => {
            return err("c", "must be a number above 0".into());
        }
        (false, Some(_)) => {
            return err(
                "c",
                "`c` is only used with l_diversity = \"recursive\" and `l`".into(),
            );
        }
        _ => {}
    }
    if let Some(t) = p.t
        && !(0.0..=1.0).contains(&t)
    {
        return err("t", "must be from 0 to 1".into());
    }
    let needs_sensitive = p.l.is_some() || p.t.is_some();
    match (&p.sensitive, needs_sensitive) {
        (None, true) => {
            return err(
                "sensitive",
                "ℓ-diversity and t-closeness need `sensitive`".into(),
            );
        }
        (Some(_), false) => {
            return err(
                "sensitive",
                "`sensitive` is only used with `l` or `t`".into(),
            );
        }
        (Some(name), true) => match d.columns.iter().find(|c| &c.name == name) {
            None => {
                return err(
                    "sensitive",
                    format!("`{name}` is not a declared column of this dataset"),
                );
            }
            Some(c) if c.action == Action::Drop => {
                return err(
                    "sensitive",
                    format!("`{name}` is dropped: the sensitive column must be delivered"),
                );
            }
            Some(c) if c.is_quasi_identifier() => {
                return err(
                    "sensitive",
                    format!(
                        "`{name}` is a quasi-identifier; the sensitive column is not generalised"
                    ),
                );
            }
            _ => {}
        },
        (None, false) => {}
    }
    let hierarchical = p.t.is_some() && p.t_closeness == TClosenessKind::Hierarchical;
    let given =
        usize::from(p.sensitive_hierarchy.is_some()) + usize::from(p.sensitive_levels.is_some());
    if hierarchical && given != 1 {
        return err(
            "sensitive_hierarchy",
            "hierarchical t-closeness needs exactly one of `sensitive_hierarchy` or `sensitive_levels`".into(),
        );
    }
    if !hierarchical && given > 0 {
        return err(
            "sensitive_hierarchy",
            "a sensitive hierarchy is only used with t_closeness = \"hierarchical\"".into(),
        );
    }
    if let Some(levels) = &p.sensitive_levels {
        for text in levels {
            crate::kernels::levels::LevelRule::parse(text)
                .map_err(|m| ("sensitive_levels".to_string(), m))?;
        }
    }
    Ok(())
}

fn validate_linkage(l: &LinkageSpec) -> Result<(), (String, String)> {
    let err = |field: String, message: String| Err((field, message));
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if l.sources.is_empty() {
        return err(
            ".sources".into(),
            "name at least one [[linkage.sources]]".into(),
        );
    }
    if l.sources.len() > 16 {
        return err(
            ".sources".into(),
            "at most 16 sources can be linked in one run".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, src) in l.sources.iter().enumerate() {
        if !name_ok(&src.name) {
            return err(
                format!(".sources[{i}].name"),
                "must be non-empty and use only letters, digits, `_`, `-`".into(),
            );
        }
        if !names.insert(src.name.as_str()) {
            return err(
                format!(".sources[{i}].name"),
                format!("source `{}` is named twice", src.name),
            );
        }
        if let Some(c) = &src.clk
            && c.split('.').filter(|p| !p.is_empty()).count() != 2
        {
            return err(
                format!(".sources[{i}].clk"),
                format!("`{c}` is not of the form `table.column`"),
            );
        }
        if src.link_on == LinkOn::Clk && src.clk.is_none() {
            return err(
                format!(".sources[{i}].clk"),
                "a source linked on CLKs names its CLK column (`table.column`)".into(),
            );
        }
    }
    if l.sources.iter().all(|s| s.link_on == LinkOn::Clk) {
        return err(
            ".sources".into(),
            "at least one source links on the pseudonym (`link_on = \"pseudonym\"`): CLK \
             sources are linked to it"
                .into(),
        );
    }
    let clk_linked = l.sources.iter().any(|s| s.link_on == LinkOn::Clk);
    match &l.clk {
        None if clk_linked => {
            return err(
                ".clk".into(),
                "a source links on CLKs: give [linkage.clk] with its `threshold`".into(),
            );
        }
        Some(_) if !clk_linked => {
            return err(
                ".clk".into(),
                "no source links on CLKs (`link_on = \"clk\"`): remove [linkage.clk]".into(),
            );
        }
        Some(c) if !(c.threshold > 0.0 && c.threshold <= 1.0) => {
            return err(
                ".clk.threshold".into(),
                "must be above 0 and at most 1 (a Dice coefficient)".into(),
            );
        }
        Some(c)
            if c.blocking
                .is_some_and(|b| !(1..=256).contains(&b.bands) || !(1..=64).contains(&b.bits)) =>
        {
            return err(
                ".clk.blocking".into(),
                "`bands` must be 1 to 256 and `bits` 1 to 64".into(),
            );
        }
        _ => {}
    }
    if clk_linked
        && !l
            .sources
            .iter()
            .any(|s| s.link_on == LinkOn::Pseudonym && s.clk.is_some())
    {
        return err(
            ".sources".into(),
            "CLK sources are matched to the persons of pseudonym-linked sources with a CLK: name \
             the CLK column (`clk = \"table.column\"`) of at least one of them"
                .into(),
        );
    }
    let mut attributes = HashSet::new();
    for (i, a) in l.attributes.iter().enumerate() {
        let at = |f: &str| format!(".attributes[{i}]{f}");
        let shadows = a.name == LINKED_PERSON || a.name.starts_with("in_");
        if !name_ok(&a.name) || shadows {
            return err(
                at(".name"),
                format!(
                    "must use only letters, digits, `_`, `-`, and differ from `{LINKED_PERSON}` and the `in_<source>` flags"
                ),
            );
        }
        if !attributes.insert(a.name.as_str()) {
            return err(
                at(".name"),
                format!("attribute `{}` is named twice", a.name),
            );
        }
        if a.columns.is_empty() {
            return err(
                at(".columns"),
                "name at least one `source.table.column`".into(),
            );
        }
        for c in &a.columns {
            let parts: Vec<&str> = c.splitn(3, '.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return err(
                    at(".columns"),
                    format!("`{c}` is not of the form `source.table.column`"),
                );
            }
            if !names.contains(parts[0]) {
                return err(
                    at(".columns"),
                    format!("`{c}`: `{}` is not a [[linkage.sources]] name", parts[0]),
                );
            }
        }
    }
    Ok(())
}

fn check_pattern(kind: IdentifierSpec, pattern: Option<&str>, what: &str) -> Result<(), String> {
    match (kind, pattern) {
        (IdentifierSpec::Pattern, None) => Err(format!(
            "identifier = \"pattern\" needs `pattern` on the {what}"
        )),
        (IdentifierSpec::Pattern, Some(p)) => {
            crate::kernels::identifier::compile_pattern(p).map(drop)
        }
        (_, Some(_)) => Err("`pattern` is only allowed with identifier = \"pattern\"".into()),
        _ => Ok(()),
    }
}

/// Checks a date (`datetime` false) or datetime format: valid chrono, years of four digits (a
/// two-digit year's century is a guess), and an offset only in datetimes (kept as an instant in
/// UTC); a zone name (`%Z`) cannot be read.
fn check_date_format(format: &str, datetime: bool) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{format}` is not a valid date format (chrono strftime, e.g. \"%d/%m/%Y\")"
        ));
    }
    if format.contains("%y") {
        return Err(format!(
            "`{format}` reads two-digit years, whose century would be guessed: export years with \
             four digits and use %Y"
        ));
    }
    if format.contains("%Z") {
        return Err(format!(
            "`{format}` reads a time zone name, which does not fix an instant: export UTC offsets \
             (%z, `+02:00`) or UTC times"
        ));
    }
    if !datetime && crate::kernels::values::has_offset(format) {
        return Err(format!(
            "`{format}` reads a UTC offset, which a date does not have: declare the column a \
             datetime"
        ));
    }
    Ok(())
}

/// Which value a cohort condition reads: a mapped column's raw and delivered values are different
/// vocabularies, so the permit must say; a delivered value is one that a fixed action gives.
fn validate_cohort_value(f: &FilterSpec, col: &ColumnSpec) -> Result<(), String> {
    if f.dataset.is_some() && f.on == Some(CohortValue::Delivered) {
        return Err("a condition on another dataset's rows reads their values as read".into());
    }
    match f.on {
        None if col.action == Action::Map => Err(format!(
            "`{}` is mapped: say whether the condition reads its values as read or as delivered \
             (on = \"raw\" or on = \"delivered\")",
            col.name
        )),
        Some(CohortValue::Delivered) => {
            let fixed = match col.action {
                Action::Keep | Action::Map | Action::Mask => true,
                Action::Generalise => !col.is_quasi_identifier(),
                _ => false,
            };
            if !fixed {
                return Err(format!(
                    "a condition on delivered values applies to a kept, mapped, masked or \
                     generalised (by `rule`) column; `{}` is not one",
                    col.name
                ));
            }
            if f.values.is_none() && f.prefixes.is_none() {
                return Err("a condition on delivered values takes `values` or `prefixes`".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn validate_filter(f: &FilterSpec, col: &ColumnSpec) -> Result<(), String> {
    let range = f.from.is_some() || f.to.is_some();
    let kinds = [range, f.values.is_some(), f.prefixes.is_some()]
        .iter()
        .filter(|&&k| k)
        .count();
    if kinds != 1 {
        return Err("give exactly one of `from`/`to`, `values` or `prefixes`".into());
    }
    let t = col.column_type;
    if range {
        for bound in [&f.from, &f.to].into_iter().flatten() {
            let ok = match t {
                t if t.is_temporal() => t.parse_day(bound).is_some(),
                ColumnType::Integer => bound.parse::<i64>().is_ok(),
                ColumnType::Float => bound.parse::<f64>().is_ok(),
                _ => {
                    return Err(format!(
                        "`from`/`to` apply to date and number columns, not {t:?}"
                    ));
                }
            };
            if !ok {
                return Err(format!(
                    "bound `{bound}` is not a valid {t:?} (dates as \"YYYY-MM-DD\", years as \
                     \"YYYY\", years and months as \"YYYY-MM\")"
                ));
            }
        }
    }
    if f.on == Some(CohortValue::Delivered) {
        // Delivered values are compared as text, whatever the column's type was.
        return Ok(());
    }
    if f.prefixes.is_some() && t != ColumnType::String {
        return Err("`prefixes` applies to string columns".into());
    }
    if f.values.is_some() && !matches!(t, ColumnType::String | ColumnType::Integer) {
        return Err("`values` applies to string and integer columns".into());
    }
    Ok(())
}

/// Whether `name` is `table` or `schema.table` of plain identifiers (the source quotes them, so
/// they are matched exactly, case included).
fn is_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_names_are_plain_identifiers() {
        for good in ["person", "cdm.person", "_t1", "Stays$2"] {
            assert!(super::is_table_name(good), "{good}");
        }
        for bad in ["", "a.b.c", "1t", "t;drop", "t\"x", "a..b", "t x", "."] {
            assert!(!super::is_table_name(bad), "{bad}");
        }
    }
}

//! One person, one fate: the persons a dataset's privacy model suppressed (or, in `link`, the
//! linked person table suppressed) leave every other dataset of the delivery that carries them —
//! matched by their identifier, whatever each dataset's pseudonym domain.

use crate::error::Result;
use crate::kernels::identifier::{Checked, IdentifierRule};
use crate::kernels::pseudonymise::PseudonymBatch;
use crate::plan::{DatasetPlan, Plan, Protection, Step};

/// Persons removed by one dataset, as that dataset delivers them.
pub struct RemovedPersons {
    /// The dataset that removed them.
    pub by: String,
    form: PersonForm,
    values: foldhash::HashSet<String>,
}

/// How a source identifier becomes the value the removing dataset delivers for its person.
enum PersonForm {
    /// Normalised by the reading dataset's own rule (`link`: the holders' pseudonyms).
    Normalised,
    /// Normalised by the removing dataset's rule (its person column kept).
    NormalisedAs(IdentifierRule),
    /// Pseudonymised by the removing dataset's rule in its domain (a composite person: as the
    /// engine joined its parts, which pseudonymise as the parts would).
    Pseudonym {
        domain: String,
        rule: IdentifierRule,
    },
    /// Tokenised by the removing dataset's rule.
    Token(IdentifierRule),
}

impl RemovedPersons {
    /// The persons a linked person table suppressed, as the holders' (normalised) pseudonyms; None
    /// when it suppressed no one (no row is then looked up).
    pub fn linked(by: &str, values: foldhash::HashSet<String>) -> Option<RemovedPersons> {
        (!values.is_empty()).then(|| RemovedPersons {
            by: by.into(),
            form: PersonForm::Normalised,
            values,
        })
    }

    /// The persons dataset `d` suppressed, `values` as it delivers its person column; None when
    /// it delivers no person column (its persons cannot be told apart) or suppressed no one.
    pub fn suppressed_by(
        d: &DatasetPlan,
        values: foldhash::HashSet<String>,
    ) -> Option<RemovedPersons> {
        let (_, rule) = d.person.as_ref()?;
        if values.is_empty() {
            return None;
        }
        let form = match d.person_step()? {
            Step::Identifier(i) => match &i.protection {
                Protection::Pseudonym { domain } => PersonForm::Pseudonym {
                    domain: domain.clone(),
                    rule: match i.rules.as_slice() {
                        [one] => one.clone(),
                        _ => rule.clone(),
                    },
                },
                Protection::Token => PersonForm::Token(i.rules[0].clone()),
            },
            _ => PersonForm::NormalisedAs(rule.clone()),
        };
        let values = match &form {
            PersonForm::NormalisedAs(rule) => {
                normalised(rule, values.iter().map(|v| Some(v.as_str())))
            }
            _ => values,
        };
        Some(RemovedPersons {
            by: d.name.clone(),
            form,
            values,
        })
    }

    /// How many persons.
    pub fn persons(&self) -> usize {
        self.values.len()
    }

    /// The persons, as the removing dataset delivers them.
    #[cfg(feature = "cluster")]
    pub(crate) fn values(&self) -> &foldhash::HashSet<String> {
        &self.values
    }

    /// Keeps only the persons the delivered file at `path` no longer holds (in its column
    /// `person`): a person some of whose rows a dataset suppressed, but who is delivered in it with
    /// others, is not suppressed as a person.
    pub fn retain_absent_from(
        &mut self,
        path: &std::path::Path,
        person: &str,
        batch_rows: usize,
    ) -> Result<()> {
        let mut normal = String::new();
        let values = &mut self.values;
        crate::source::read_parquet_text(path, &[person.to_string()], batch_rows, |df| {
            let delivered = crate::source::str_values(df.columns())?;
            for v in delivered[0].iter().flatten() {
                match &self.form {
                    PersonForm::NormalisedAs(rule) => {
                        if rule.check_into(Some(v), &mut normal) != Checked::Missing {
                            values.remove(&normal);
                        }
                    }
                    _ => {
                        values.remove(*v);
                    }
                }
            }
            Ok(())
        })
    }

    /// Adds the persons the same dataset removed again.
    pub fn add(&mut self, more: RemovedPersons) {
        debug_assert_eq!(self.by, more.by);
        self.values.extend(more.values);
    }

    /// Clears `keep` for the kept rows whose person (`ids` as the source writes them, `rule` the
    /// reading dataset's) is among these; returns how many.
    pub fn leave_out(
        &self,
        plan: &Plan,
        keep: &mut [bool],
        ids: &[Option<&str>],
        rule: &IdentifierRule,
    ) -> u64 {
        let listed = |form: Option<&str>| form.is_some_and(|v| self.values.contains(v));
        let leave: Vec<bool> = match &self.form {
            PersonForm::Normalised => {
                return super::leave_out_persons(keep, ids, rule, |id| self.values.contains(id));
            }
            PersonForm::NormalisedAs(theirs) => {
                return super::leave_out_persons(keep, ids, theirs, |id| self.values.contains(id));
            }
            PersonForm::Pseudonym { domain, rule } => {
                let mut batch = PseudonymBatch::default();
                plan.domains[domain]
                    .pseudonymiser
                    .pseudonymise_into(&[rule], &[ids], &mut batch);
                let text = batch.take_text();
                batch.values_in(&text).map(listed).collect()
            }
            PersonForm::Token(rule) => {
                let tokeniser = plan
                    .tokeniser
                    .as_ref()
                    .expect("validated: [tokens] present");
                let (_, tokens) = tokeniser.tokenise(rule, ids);
                tokens.iter().map(|t| listed(t.as_deref())).collect()
            }
        };
        super::leave_out_rows(keep, leave)
    }
}

/// The values normalised by `rule` (those it finds missing left out).
fn normalised<'a>(
    rule: &IdentifierRule,
    values: impl Iterator<Item = Option<&'a str>>,
) -> foldhash::HashSet<String> {
    let mut normal = String::new();
    let mut out = foldhash::HashSet::default();
    for v in values {
        if rule.check_into(v, &mut normal) != Checked::Missing {
            out.insert(normal.clone());
        }
    }
    out
}

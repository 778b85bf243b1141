//! Person-level cohorts: the persons who have, in a dataset of the permit, a row that meets a
//! condition (a diabetes code in `conditions`), so that every row of theirs, in every dataset,
//! is in the cohort. Found by one pass over that dataset, the first time a batch needs them;
//! memory is bounded by the persons found, not by rows.

use std::collections::HashSet;

use super::{filter_mask, mark_missing, strings, typed_columns};
use crate::error::{Error, Result};
use crate::kernels::identifier::Checked;
use crate::plan::{Filter, PersonCondition, Plan};

/// The persons (normalised identifiers) meeting a person-level condition.
pub(super) fn persons_meeting<'c>(
    plan: &Plan,
    c: &'c PersonCondition,
) -> Result<&'c HashSet<String>> {
    let of = &plan.datasets[c.dataset];
    let found = c
        .persons
        .get_or_init(|| collect(plan, c.dataset, &c.condition).map_err(|e| e.to_string()));
    found.as_ref().map_err(|message| {
        Error::input(
            of.files.first().cloned().unwrap_or_default(),
            format!("dataset `{}`, read for a person-level cohort", of.name),
            message.clone(),
        )
    })
}

fn collect(plan: &Plan, dataset: usize, condition: &Filter) -> Result<HashSet<String>> {
    let of = &plan.datasets[dataset];
    let (person, rule) = of.person.as_ref().expect("validated: person column");
    let mut persons = HashSet::new();
    let mut normal = String::new();
    crate::source::read_batches(
        &of.source,
        &of.files,
        &of.source_columns(),
        plan.permit.spec.output.batch_rows,
        &format!("source of {} (person-level cohort)", of.name),
        |batch| {
            let cols = mark_missing(of, typed_columns(of, &batch)?)?;
            let meets = filter_mask(std::slice::from_ref(condition), &cols)?;
            for (id, meets) in strings(&cols[*person])?.into_iter().zip(meets) {
                if meets
                    && rule.check_into(id, &mut normal) == Checked::Valid
                    && !persons.contains(&normal)
                {
                    persons.insert(normal.clone());
                }
            }
            Ok(())
        },
    )?;
    Ok(persons)
}

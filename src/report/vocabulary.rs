//! The controlled vocabularies a HealthDCAT-AP Release 8 description draws its values from: the EU
//! Named Authority Lists (access rights, data themes, dataset types, file types) and the HealthData@EU
//! ones (the EHDS Article 51 health categories, coding systems), with the English labels a concept
//! carries inline. A catalogue entry names a concept by its code (`EHRS`) or its full IRI.

use serde_json::{Value, json};

use crate::permit::CodingSystem;

/// EU Named Authority Lists (Publications Office).
pub const EU_AUTHORITY: &str = "http://publications.europa.eu/resource/authority/";
/// HealthData@EU vocabularies, production base since Release 8.
pub const HEALTH_AUTHORITY: &str = "https://hdeu-dcat.data.health.europa.eu/resource/authority/";

/// The health data categories of Article 51(1) EHDS, as the Release 8 vocabulary codes them, each
/// with the article's wording shortened.
pub const HEALTH_CATEGORIES: [(&str, &str); 17] = [
    (
        "EHRS",
        "Electronic health data from electronic health records",
    ),
    ("DIOH", "Data on factors impacting on health"),
    (
        "NRPE",
        "Aggregated data on healthcare needs, resources, provision and expenditure",
    ),
    (
        "PGEH",
        "Personal health data automatically generated through medical devices",
    ),
    (
        "IDHP",
        "Data on the professional status and specialisation of health professionals",
    ),
    ("PHDR", "Population-based health data registries"),
    (
        "MRMR",
        "Data from medical registries and mortality registries",
    ),
    (
        "EHCT",
        "Data from clinical trials, studies, investigations and performance studies",
    ),
    ("EMRD", "Other health data from medical devices"),
    (
        "RMMD",
        "Data from registries for medicinal products and medical devices",
    ),
    (
        "RQSH",
        "Data from research cohorts, questionnaires and surveys related to health",
    ),
    ("EINS", "Health data from biobanks and associated databases"),
    (
        "HRAD",
        "Healthcare-related administrative data, including claims and reimbursements",
    ),
    ("HGPD", "Human genetic, epigenomic and genomic data"),
    ("HPML", "Other human molecular data"),
    ("RPDG", "Data on pathogens that impact human health"),
    ("WELA", "Data from wellness applications"),
];

/// A concept of a vocabulary, given in a catalogue entry by its code or its full IRI.
#[derive(Debug, Clone, PartialEq)]
pub struct Concept {
    pub iri: String,
    pub label: String,
    pub scheme: String,
    /// The class DCAT-AP gives the property's values, besides `skos:Concept` (an access right is
    /// a `dct:RightsStatement`, a file type a `dct:MediaTypeOrExtent`).
    pub class: Option<&'static str>,
}

impl Concept {
    /// Concept `code` of the vocabulary `scheme` under `base`.
    fn new(base: &str, scheme: &str, code: &str, label: &str, class: Option<&'static str>) -> Self {
        Concept {
            iri: format!("{base}{scheme}/{code}"),
            label: label.to_string(),
            scheme: format!("{base}{scheme}"),
            class,
        }
    }

    /// The concept as a JSON-LD node: typed, labelled and in its scheme, so that a validator
    /// that has not loaded the vocabulary still sees a `skos:Concept` with a label.
    pub fn node(&self) -> Value {
        let types: Vec<&str> = std::iter::once("skos:Concept").chain(self.class).collect();
        json!({
            "@id": self.iri,
            "@type": types,
            "skos:prefLabel": { "@value": self.label, "@language": "en" },
            "skos:inScheme": { "@id": self.scheme },
        })
    }
}

/// `code_or_iri` in the vocabulary `scheme` (a path under `base`): the code after the scheme's
/// IRI, or the code itself. `None` when it names another vocabulary.
fn code_in<'a>(code_or_iri: &'a str, base: &str, scheme: &str) -> Option<&'a str> {
    let prefix = format!("{base}{scheme}/");
    match code_or_iri.strip_prefix(&prefix) {
        Some(code) => Some(code),
        None if !code_or_iri.contains(':') => Some(code_or_iri),
        None => None,
    }
}

/// A health category of Article 51 EHDS, by code (`EHRS`) or IRI; an error lists the codes.
pub fn health_category(code_or_iri: &str) -> Result<Concept, String> {
    let scheme = "healthcategories";
    let known = code_in(code_or_iri.trim(), HEALTH_AUTHORITY, scheme)
        .and_then(|code| HEALTH_CATEGORIES.iter().find(|(c, _)| *c == code));
    match known {
        Some((code, label)) => Ok(Concept::new(HEALTH_AUTHORITY, scheme, code, label, None)),
        None => Err(format!(
            "`{code_or_iri}` is not a health category of HealthDCAT-AP Release 8 (Article 51 \
             EHDS); give one of {} or its IRI under {HEALTH_AUTHORITY}{scheme}/",
            HEALTH_CATEGORIES
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A dataset type of the EU Dataset Type Named Authority List, by code or IRI.
pub fn dataset_type(code_or_iri: &str) -> Result<Concept, String> {
    let scheme = "dataset-type";
    let code = code_in(code_or_iri.trim(), EU_AUTHORITY, scheme)
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .ok_or_else(|| {
            format!(
                "`{code_or_iri}` is not a code of the EU dataset-type table (capital letters \
                 and `_`, such as STATISTICAL) nor its IRI under {EU_AUTHORITY}{scheme}/"
            )
        })?;
    let label = code.replace('_', " ").to_lowercase();
    Ok(Concept::new(EU_AUTHORITY, scheme, code, &label, None))
}

/// A concept of an EU Named Authority List whose code and label the description fixes, and the
/// class DCAT-AP gives the values of the property it is used with.
pub fn eu(scheme: &str, code: &str, label: &str, class: Option<&'static str>) -> Concept {
    Concept::new(EU_AUTHORITY, scheme, code, label, class)
}

/// The coding system in the Release 8 coding-system vocabulary; `None` for a system it does not
/// list (INSEE's geographic code), which the column's description names instead.
pub fn coding_system(c: CodingSystem) -> Option<Concept> {
    let (code, label) = match c {
        CodingSystem::Icd10 => (
            "ICD-10",
            "International Classification of Diseases, 10th revision",
        ),
        CodingSystem::Atc => ("ATC", "Anatomical Therapeutic Chemical classification"),
        CodingSystem::SnomedCt => ("SNOMED-CT", "SNOMED CT"),
        CodingSystem::Loinc => ("LOINC", "Logical Observation Identifiers Names and Codes"),
        CodingSystem::InseeCog => return None,
    };
    Some(Concept::new(
        HEALTH_AUTHORITY,
        "coding-system",
        code,
        label,
        Some("dct:Standard"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_categories_by_code_or_iri_and_nothing_else() {
        let by_code = health_category("EHRS").unwrap();
        assert_eq!(
            by_code.iri,
            "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories/EHRS"
        );
        assert_eq!(health_category(&by_code.iri).unwrap(), by_code);
        assert_eq!(HEALTH_CATEGORIES.len(), 17);
        // The codes of earlier drafts and of other vocabularies are refused, naming the codes.
        let err = health_category("http://healthdataportal.eu/ns/health#EHR").unwrap_err();
        assert!(err.contains("EHRS, DIOH"), "{err}");
        assert!(health_category("EHR").is_err());
        assert!(
            health_category("https://example.org/resource/authority/healthcategories/EHRS")
                .is_err()
        );
    }

    #[test]
    fn dataset_types_and_coding_systems() {
        let t = dataset_type("STATISTICAL").unwrap();
        assert_eq!(
            t.iri,
            "http://publications.europa.eu/resource/authority/dataset-type/STATISTICAL"
        );
        assert_eq!(dataset_type(&t.iri).unwrap(), t);
        assert!(dataset_type("statistical data").is_err());
        assert!(dataset_type("https://example.org/STATISTICAL").is_err());
        assert_eq!(
            coding_system(CodingSystem::Icd10).unwrap().iri,
            "https://hdeu-dcat.data.health.europa.eu/resource/authority/coding-system/ICD-10"
        );
        assert!(coding_system(CodingSystem::InseeCog).is_none());
    }
}

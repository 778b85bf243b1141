//! Privacy: the generalisation hierarchies of quasi-identifiers, the encoded table of their
//! distinct code combinations with the privacy models and metrics, the lattice search for the
//! optimal transformation, the two passes of an anonymised dataset with the re-check of the written
//! file, the risk measures (population uniqueness estimated in `population`), and k^m-anonymity
//! of set-valued attributes.

pub mod anonymise;
pub mod hierarchy;
pub mod lattice;
pub mod population;
pub mod risk;
pub mod set_valued;
pub mod subset;
pub mod table;

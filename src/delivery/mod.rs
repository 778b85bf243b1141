//! Deliveries: Parquet files written into a staging folder and renamed into place only when complete,
//! with a `manifest.json` of checksums and schemas, and `inspect`, which verifies one.
//!
//! A consumer never sees a partial delivery: a run that fails, or is killed, leaves at most a hidden
//! staging folder (`.<name>.staging`), removed by the next run.

mod files;
mod manifest;
pub mod order;
mod rebatch;
pub mod row_group;
mod spill;
mod staging;
mod writer;

pub use files::{write_durably, write_new_private};
pub use manifest::{
    CLK_DOMAIN, DatasetRecord, DateShiftRecord, DomainRecord, FieldRecord, Footer, LINKAGE_REPORT,
    LINKAGE_SUMMARY, LevelRecord, MANIFEST, MANIFEST_FORMAT, Manifest, PermitRecord,
    PopulationUniquenessRecord, PrivacyRecord, PseudonymRecord, REPORT_HTML, REPORT_JSON,
    SubsetRecord, TOKEN_DOMAIN, footer, read_footer, read_manifest, sha256_file, verify,
};
pub use order::OrderedWriter;
pub use spill::{SpillWriter, read_spill, read_spill_batches, spill_rows};
pub use staging::{CommitOps, FileSystem, LINKAGE_WORK_DIR, OutputPlaces, Staging};
pub use writer::{DatasetWriter, WrittenFile};

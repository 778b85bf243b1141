//! `ehds-prep permit-schema`: the JSON Schema of the permit file.

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep permit-schema > permit.schema.json";

/// Print the JSON Schema of the permit file (for editors and CI checks of permits).
#[derive(clap::Args)]
pub struct Args {}

pub fn execute(_: Args) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&ehds_prep::permit::json_schema())?
    );
    Ok(())
}

//! The kernels: the transformations a plan's steps apply to a column, as plain Rust over slices
//! of values, free of polars types (a test checks no file here imports polars), so that any
//! executor (polars batches today, a cluster tomorrow) produces bit-identical results. Each takes
//! plain parameters; `plan` translates the permit's options into them.

pub mod clk;
pub mod clk_matching;
pub mod dateshift;
pub mod generalise;
pub mod hex;
pub mod hmac;
pub mod identifier;
pub mod keys;
pub mod levels;
pub mod mapping;
pub mod mask;
pub mod pseudonymise;
pub mod tokens;
pub mod values;

#[cfg(test)]
mod tests {
    /// The kernels stay free of polars: no file of this folder names it outside comments.
    #[test]
    fn kernels_are_free_of_the_dataframe_library() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kernels");
        // Spelt in two halves, so that this test does not find itself.
        let name = ["pol", "ars"].concat();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!code.contains(&name), "{} uses {name}", path.display());
        }
    }
}

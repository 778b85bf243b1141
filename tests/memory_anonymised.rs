//! Bounded memory of an anonymised run: it grows with the distinct quasi-identifier combinations and
//! the persons, not with rows. The same stays written three times over (same persons, same
//! combinations, three times the rows) keep nearly the same peak through profiling, search, writing
//! and the re-check.

mod common;

use common::{run_measuring_peak_kb, single_dataset_permit};

#[test]
fn an_anonymised_run_grows_with_persons_and_combinations_not_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ehds_prep::generate::write_extracts(&data, 300_000, 7).unwrap();
    let stays = data.join("hospital/stays.csv");
    let text = std::fs::read_to_string(&stays).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let mut peaks = Vec::new();
    for (name, copies) in [("once", 1), ("thrice", 3)] {
        std::fs::write(&stays, format!("{header}\n{}", body.repeat(copies))).unwrap();
        peaks.push(run_measuring_peak_kb(&single_dataset_permit(
            "research",
            "stays",
            tmp.path(),
            &data,
            &format!("out-{name}"),
        )));
    }
    eprintln!(
        "anonymised stays: peak {} MB once, {} MB with every row three times",
        peaks[0] / 1024,
        peaks[1] / 1024
    );
    assert!(
        (peaks[1] as f64) < 1.25 * peaks[0] as f64,
        "peak memory grew from {} kB to {} kB with the same persons and combinations",
        peaks[0],
        peaks[1]
    );
}

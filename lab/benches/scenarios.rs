//! Every scenario of the catalogue on one native lab: is it diagnosed
//! right, is the culprit right, and how many seconds from `lab scenario
//! start` to the correct diagnosis. Prints the table BENCHMARKS.md keeps.
//!
//! cargo bench -p lab --bench scenarios

use std::time::Duration;

use lab_testkit::{Down, LabCli, walk};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"));
    let _down = Down(&lab);
    lab.ok(&["up", "--runtime", "native"]);

    println!("| scenario | root cause | diagnosed right | culprit right | seconds from start |");
    println!("|---|---|---|---|---|");
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    for scenario in lab.scenarios_for("native") {
        let walked = walk(&lab, &scenario, false, Duration::from_secs(60));
        println!(
            "| {} | {} | {} | {} | {} |",
            walked.id,
            walked.root_cause,
            yes(walked.diagnosed),
            yes(walked.culprit_right),
            walked.seconds.map_or("—".to_owned(), |s| format!("{s:.1}"))
        );
        for failure in &walked.failures {
            eprintln!("{failure}");
        }
    }
}

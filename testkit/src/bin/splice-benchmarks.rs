//! Splices benchmark sections into BENCHMARKS.md: each `<name>.md` given
//! replaces what stands between `<!-- bench:<name> -->` and
//! `<!-- /bench:<name> -->`; prose outside the markers is left alone.
//! `scripts/bench` runs it after each bench that wrote its section.
//!
//!     splice-benchmarks BENCHMARKS.md target/bench-results/heap.md …

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("splice-benchmarks: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let [document_path, sections @ ..] = args.as_slice() else {
        bail!("usage: splice-benchmarks BENCHMARKS.md SECTION.md…");
    };
    if sections.is_empty() {
        bail!("usage: splice-benchmarks BENCHMARKS.md SECTION.md…");
    }
    let before = std::fs::read_to_string(document_path)
        .with_context(|| format!("reading {document_path}"))?;
    let mut document = before.clone();
    for section in sections {
        let path = Path::new(section);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{section}: no section name in the file name"))?;
        let body = std::fs::read_to_string(path).with_context(|| format!("reading {section}"))?;
        document = lab_testkit::splice(&document, name, &body)
            .with_context(|| format!("splicing {section} into {document_path}"))?;
        println!("{document_path}: section {name} from {section}");
    }
    if document != before {
        // Through a temporary file beside it, so an interrupted write
        // never leaves half a document.
        let partial = format!("{document_path}.partial");
        std::fs::write(&partial, &document).with_context(|| format!("writing {partial}"))?;
        std::fs::rename(&partial, document_path)
            .with_context(|| format!("replacing {document_path}"))?;
    }
    Ok(())
}

//! Builds the lab's own files into the binary, so an installed `lab` needs
//! no source tree: every file under `docker/` (Alloy, Tempo, Loki, Mimir,
//! Pyroscope, Grafana's provisioning and dashboards) and every scenario
//! under `scenarios/`; and lists the infrastructure fault kinds of
//! `src/faults/`, one file each.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Writes `OUT_DIR/<name>` listing every file under `folder` as
/// `(path relative to folder, bytes)`.
fn embed(folder: &str, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(folder);
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut code = format!(
        "/// Every file under `{folder}/`, by its path there.\npub const FILES: &[(&str, &[u8])] = &[\n"
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).expect("under the folder");
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            relative.display().to_string(),
            file.canonicalize()
                .expect("an existing file")
                .display()
                .to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join(name), code).expect("OUT_DIR is writable");
}

fn main() {
    embed("docker", "docker_files.rs");
    embed("scenarios", "scenario_files.rs");
    lab_build_support::Kinds {
        folder: "src/faults",
        kind_type: "InfraKind",
        slice: "INFRA_FAULTS",
        visibility: "",
        out: "infra_kinds.rs",
    }
    .write();
}

//! The registry of a folder's fault kinds, for build scripts: every `.rs`
//! file there (but `mod.rs`) with a line that starts `pub const KIND:
//! <type> =` is one kind, so a new kind is a new file and no list
//! elsewhere is edited.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A folder of kinds, one file each.
pub struct Kinds<'a> {
    /// The folder, relative to the crate's manifest (`src/faults`).
    pub folder: &'a str,
    /// The type of each file's `KIND` (`FaultKind`).
    pub kind_type: &'a str,
    /// The name of the generated slice (`ALL`).
    pub slice: &'a str,
    /// The modules' visibility (`pub` or empty).
    pub visibility: &'a str,
    /// The file written in `OUT_DIR`, for an `include!` in the folder's
    /// `mod.rs`.
    pub out: &'a str,
}

impl Kinds<'_> {
    /// Writes the registry: a module per kind file (by its path) and the
    /// slice of their `KIND`s, in the files' order.
    pub fn write(&self) {
        let folder = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
            .join(self.folder);
        println!("cargo:rerun-if-changed={}", folder.display());
        let marker = format!("pub const KIND: {} =", self.kind_type);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
            .map(|e| e.expect("a readable folder entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter(|p| p.file_name().is_some_and(|n| n != "mod.rs"))
            .collect();
        files.sort();
        let mut modules = String::new();
        let mut slice = format!(
            "/// Every kind, one per file of `{}/` that defines its `KIND`.\npub const {}: &[&{}] = &[\n",
            self.folder, self.slice, self.kind_type
        );
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            if !text.lines().any(|line| line.starts_with(&marker)) {
                continue;
            }
            let module = file
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a file name in UTF-8");
            let path = file.canonicalize().expect("an existing file");
            let _ = writeln!(
                modules,
                "#[path = {:?}]\n{} mod {module};",
                path.display().to_string(),
                self.visibility
            );
            let _ = writeln!(slice, "    &{module}::KIND,");
        }
        slice.push_str("];\n");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        std::fs::write(out.join(self.out), modules + &slice).expect("OUT_DIR is writable");
    }
}

//! The registry of the services' fault kinds: one file each in
//! `src/faults/`.

fn main() {
    lab_build_support::Kinds {
        folder: "src/faults",
        kind_type: "FaultKind",
        slice: "ALL",
        visibility: "pub",
        out: "fault_kinds.rs",
    }
    .write();
}

//! PromQL for the embedded backend.

//! TraceQL for the embedded backend.

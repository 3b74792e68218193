//! LogQL for the embedded backend.

//! What the embedded backend takes in.

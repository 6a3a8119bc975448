//! Shared helpers for ORMDB benchmarks.

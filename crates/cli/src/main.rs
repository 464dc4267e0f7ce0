//! `tollgate`: the one binary for both sides of a rate-limited API.

fn main() {}

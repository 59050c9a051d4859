//! jeton-bench: being moved here from the product crate.

fn main() {}

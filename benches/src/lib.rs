//! Benchmark support: a small synthetic traffic generator shared by the benches and examples.

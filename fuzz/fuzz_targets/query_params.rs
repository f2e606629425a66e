#![no_main]
// cargo fuzz run query_params fuzz/corpus/query_params  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_server::fuzzing::query_params(data));

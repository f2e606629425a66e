#![no_main]
// cargo fuzz run checkpoint fuzz/corpus/checkpoint  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_index::fuzzing::checkpoint(data));

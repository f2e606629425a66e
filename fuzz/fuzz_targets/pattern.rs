#![no_main]
// cargo fuzz run pattern fuzz/corpus/pattern  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_index::fuzzing::pattern(data));

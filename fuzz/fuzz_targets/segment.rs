#![no_main]
// cargo fuzz run segment fuzz/corpus/segment  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::segment(data));

#![no_main]
// cargo fuzz run dict_snapshot fuzz/corpus/dict_snapshot  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::dict_snapshot(data));

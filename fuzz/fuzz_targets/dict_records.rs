#![no_main]
// cargo fuzz run dict_records fuzz/corpus/dict_records  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::dict_records(data));

#![no_main]
// cargo fuzz run dict_log fuzz/corpus/dict_log  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::dict_log(data));

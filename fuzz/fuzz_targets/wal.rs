#![no_main]
// cargo fuzz run wal fuzz/corpus/wal  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::wal(data));

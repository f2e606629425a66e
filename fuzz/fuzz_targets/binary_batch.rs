#![no_main]
// cargo fuzz run binary_batch fuzz/corpus/binary_batch  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_server::fuzzing::binary_batch(data));

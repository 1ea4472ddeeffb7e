//! Kernel ring-buffer records: decoding never panics, whatever the bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = aiwatch::kernel::events::decode(data) {
        let _ = ev.header();
    }
});

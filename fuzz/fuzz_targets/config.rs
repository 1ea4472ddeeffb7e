//! Configuration files: any text is a config or a clear error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = aiwatch::config::Config::parse(text, "fuzz.toml") {
            let _ = cfg.to_toml();
        }
    }
});

//! Secret scrubbing of command lines and variable values.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text.split('\0').map(str::to_string).collect();
    let _ = aiwatch::detect::redact::argv(&args);
    let _ = aiwatch::detect::variables::redact(&text);
});

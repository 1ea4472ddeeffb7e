//! Netlink route requests.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aiwatch::detect::parsers::netlink::requests(data);
});

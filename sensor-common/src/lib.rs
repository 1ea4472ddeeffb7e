//! Types shared by the eBPF programs and the `aiwatch` daemon.
//!
//! Everything here crosses the kernel boundary: `#[repr(C)]`, explicit padding, no `bool` and no
//! Rust enums in the structs (enums travel as `u32` and come back through `TryFrom`, all declared
//! with one macro, `u32_enum!`). Every event starts with [`EventHeader`] and implements [`Event`].
//! Sizes are asserted so a layout change breaks the build, not the decoder.
#![no_std]

#[macro_use]
mod u32_enum;

pub mod compat;
pub mod env;
pub mod event;
pub mod file;
pub mod maps;
pub mod net;
pub mod process;
pub mod tls;
pub mod tracepoints;

pub use compat::{CompatAbi, CompatData, CompatEvent, COMPAT_DATA_LEN, X32_SYSCALL_BIT};
pub use env::*;
pub use event::*;
pub use file::*;
pub use maps::*;
pub use net::*;
pub use process::*;
pub use tls::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared value comes back through `TryFrom`, under a label of its own.
    macro_rules! round_trip {
        ($($ty:ty),*) => {$(
            for (i, v) in <$ty>::ALL.into_iter().enumerate() {
                assert_eq!(<$ty>::try_from(v as u32), Ok(v));
                assert!(<$ty>::ALL[..i].iter().all(|w| w.name() != v.name()), "{}", v.name());
            }
            assert_eq!(<$ty>::ALL.len(), <$ty>::COUNT as usize);
        )*};
    }

    #[test]
    fn u32_enums() {
        round_trip!(
            EventKind,
            CompatAbi,
            CompatData,
            Syscall,
            Direction,
            EnvFunc,
            TlsFunc,
            InterfaceIoctl,
            TrackState,
            Stat
        );
        assert_eq!(EventKind::try_from(0), Err(0));
        assert_eq!(Syscall::try_from(15), Err(15));
        // User space indexes the per-CPU totals by position in `Stat::ALL`.
        assert!(Stat::ALL.iter().enumerate().all(|(i, s)| *s as usize == i));
    }
}

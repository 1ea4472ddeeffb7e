//! The one way this crate declares a closed set of values that crosses the kernel boundary.

/// Declares a `#[repr(u32)]` enum with its values and a label per value, and gives it what
/// both sides need: `TryFrom<u32>` (the enum travels as `u32`; a value the decoder does not
/// know comes back as the error), `ALL` (declaration order), `COUNT` and `name()` (the label).
///
/// Bit flags (`flags`, `sock_flags`) stay constants: a value may have several bits set, so it
/// is not one variant of an enum.
macro_rules! u32_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal => $label:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// How many values there are.
            pub const COUNT: u32 = [$($label),+].len() as u32;
            /// Every value, in declaration order.
            pub const ALL: [Self; Self::COUNT as usize] = [$(Self::$variant),+];

            /// The value's label (a metric label, a syscall or constant name).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl TryFrom<u32> for $name {
            type Error = u32;
            fn try_from(v: u32) -> Result<Self, u32> {
                match v {
                    $($value => Ok(Self::$variant),)+
                    other => Err(other),
                }
            }
        }
    };
}

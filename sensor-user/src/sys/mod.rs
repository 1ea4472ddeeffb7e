//! Leaf helpers about the host, used by every stage and using none of them.

pub mod clock;
pub mod errno;
pub mod keeper;
pub mod privileges;
pub mod users;

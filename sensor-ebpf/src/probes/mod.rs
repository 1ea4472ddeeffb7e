pub mod alternatives;
pub mod files;
pub mod net;
pub mod process;

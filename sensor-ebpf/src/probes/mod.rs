pub mod alternatives;
pub mod env;
pub mod files;
pub mod net;
pub mod process;

pub mod alternatives;
pub mod files;
pub mod process;

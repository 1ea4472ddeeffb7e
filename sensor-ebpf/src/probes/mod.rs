pub mod alternatives;
pub mod compat;
pub mod env;
pub mod files;
pub mod net;
pub mod net_close;
pub mod process;

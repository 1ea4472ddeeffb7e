pub mod alternatives;
pub mod env;
pub mod files;
pub mod host;
pub mod net;
pub mod net_close;
pub mod process;
pub mod thread_exit;

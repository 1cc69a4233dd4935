//! The binary's concerns, on top of the core (`proto`), the driver (`net`) and operations (`ops`):
//! the command line, settings resolved from the shared config file, the runner that starts the
//! workers, the admin client, the deployment probe and coturn config import.

pub mod admin_client;
pub mod cli;
pub mod coturn_config;
pub mod probe;
pub mod runner;
pub mod settings;

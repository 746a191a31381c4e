//! How settings are written, on the command line and in the config file alike.

pub mod duration;
pub mod size;

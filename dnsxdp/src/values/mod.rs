//! How settings are written, on the command line and in the config file alike.

pub mod duration;
pub mod file;
pub mod size;

/// `value`, or `default` when not set; zero is an error naming `key`.
pub fn nonzero<T: PartialEq + Default>(
    key: &str,
    value: Option<T>,
    default: T,
) -> anyhow::Result<T> {
    match value {
        Some(v) if v == T::default() => anyhow::bail!("{key}: must be more than 0"),
        v => Ok(v.unwrap_or(default)),
    }
}

//! Reading a setting's value from the config file, with the error a user can act on:
//! `expected an integer from 1 to 4294967295, got 0`. The config module prefixes the key.

use std::{path::PathBuf, time::Duration};

use clap::ValueEnum;
use serde::{Deserialize, Deserializer, de::Error as _};
use toml::Value;

use super::{duration, size};

/// Reads the value, then `read` it as `want` says it should be.
pub fn read<'de, D: Deserializer<'de>, T>(
    d: D,
    want: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    match read(&value) {
        Some(v) => Ok(Some(v)),
        None => Err(D::Error::custom(format!("expected {want}, got {value}"))),
    }
}

/// A string, or a list of them.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    read(d, "a string or list of strings", |value| match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|v| v.as_str().map(String::from)).collect(),
        _ => None,
    })
}

pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    read(d, "true or false", Value::as_bool)
}

/// An integer from 1.
pub fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, "an integer from 1 to 4294967295", |v| {
        count(v).filter(|&n| n > 0)
    })
}

/// An integer from 0.
pub fn count_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, "an integer from 0 to 4294967295", count)
}

fn count(value: &Value) -> Option<u32> {
    u32::try_from(value.as_integer()?).ok()
}

pub fn v4_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    read(d, "an integer from 0 to 32", |v| bits(v, 32))
}

pub fn v6_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    read(d, "an integer from 0 to 128", |v| bits(v, 128))
}

fn bits(value: &Value, max: u8) -> Option<u8> {
    u8::try_from(value.as_integer()?).ok().filter(|&b| b <= max)
}

/// A duration string, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    read(d, duration::EXPECTED, |value| match value {
        Value::String(s) => duration::parse(s).ok(),
        Value::Integer(secs) => u64::try_from(*secs).ok().map(Duration::from_secs),
        _ => None,
    })
}

/// A size of more than 0 bytes: `64M`, or a bare number of bytes.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let bytes = |value: &Value| match value {
        Value::String(s) => size::parse(s).ok(),
        Value::Integer(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    read(d, size::EXPECTED, |v| bytes(v).filter(|&n| n > 0))
}

pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    read(d, "a path", |v| v.as_str().map(PathBuf::from))
}

/// A socket address, parsed by its component.
pub fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    read(d, "ADDR:PORT", |v| v.as_str().map(String::from))
}

/// One of the names the flag takes.
pub fn choice<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<Option<T>, D::Error> {
    let names: Vec<String> = T::value_variants()
        .iter()
        .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
        .collect();
    read(d, &format!("one of {}", names.join(", ")), |v| {
        T::from_str(v.as_str()?, false).ok()
    })
}

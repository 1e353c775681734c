use crate::Error;
use std::fmt::Display;
use std::str::FromStr;

/// The operator's configuration: the `config` map of its job spec, as string pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration of `(key, value)` pairs. If a key repeats, the last one wins.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an `invalid-config` error saying it is missing.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::invalid_config(format!("missing config key '{key}'")))
    }

    /// The value of `key` parsed as `T`; an `invalid-config` error if it is missing or
    /// does not parse (the message names the key, the value and the type).
    pub fn parse<T>(&self, key: &str) -> Result<T, Error>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_value(key, self.require(key)?)
    }

    /// Like [`Config::parse`], but `Ok(None)` when the key is not set.
    pub fn parse_opt<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key).map(|v| parse_value(key, v)).transpose()
    }

    /// Like [`Config::parse`], but `default` when the key is not set.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse_opt(key)?.unwrap_or(default))
    }

    /// All `(key, value)` pairs, in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn parse_value<T>(key: &str, value: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: Display,
{
    value.trim().parse().map_err(|e| {
        let ty = std::any::type_name::<T>();
        Error::invalid_config(format!(
            "config key '{key}': cannot parse '{value}' as {ty}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn get_parse_and_defaults() {
        let c = config(&[("n", "15"), ("name", "x"), ("n", " 20 ")]);
        assert_eq!(c.get("name"), Some("x"));
        assert_eq!(c.get("nope"), None);
        assert_eq!(c.parse::<i64>("n").unwrap(), 20, "last wins, trimmed");
        assert_eq!(c.parse_or::<i64>("m", 7).unwrap(), 7);
        assert_eq!(c.parse_opt::<i64>("m").unwrap(), None);
        assert_eq!(c.iter().count(), 3);
    }

    #[test]
    fn errors_name_key_value_and_type() {
        let c = config(&[("n", "abc")]);
        let e = c.parse::<i32>("n").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.message().contains("'n'"), "{e}");
        assert!(e.message().contains("'abc'"), "{e}");
        assert!(e.message().contains("i32"), "{e}");
        let e = c.parse::<i32>("missing").unwrap_err();
        assert_eq!(e.message(), "missing config key 'missing'");
        assert!(
            c.parse_or::<i32>("n", 1).is_err(),
            "a bad value is not defaulted"
        );
    }
}

//! Secret values: a type that never prints itself, and the scrubbing of every secret this process
//! resolved out of any text it prints (librdkafka quotes property values in some of its error
//! messages). A leaf module, importing nothing from the crate, so that the error type can scrub
//! without an import cycle.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// A resolved secret (a password, a key's passphrase). `Debug` and `Display` show `***`; the
/// value itself is read with [`SecretString::expose`], where a client needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret and remembers it, so that [`scrub`] hides it from every printed text.
    pub fn new(value: String) -> Self {
        remember(&value);
        SecretString(value)
    }

    /// The value, for the one place that must hand it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Every secret this process resolved.
static RESOLVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remember(value: &str) {
    let mut resolved = RESOLVED.lock().unwrap_or_else(PoisonError::into_inner);
    if value.len() >= 3 && !resolved.iter().any(|v| v == value) {
        resolved.push(value.to_string());
    }
}

/// `text` with every secret this process resolved replaced by `***`.
pub fn scrub(text: &str) -> String {
    let resolved = RESOLVED.lock().unwrap_or_else(PoisonError::into_inner);
    resolved.iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "***"))
}

/// librdkafka properties whose values are secret (redacted in any printout).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.jaas.config", "ssl.key.pem", "ssl_key", "token"].iter().any(|s| key.contains(s))
}

/// A properties map for printing: secret values replaced by `***`.
pub fn redacted(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props.iter().map(|(k, v)| (k.clone(), if is_secret_key(k) { "***".into() } else { v.clone() })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_itself_and_is_scrubbed_from_any_text() {
        let secret = SecretString::new("tr0ub4dor-and-3".into());
        assert_eq!(format!("{secret} {secret:?}"), "*** SecretString(***)");
        assert_eq!(secret.expose(), "tr0ub4dor-and-3");
        assert_eq!(scrub("auth failed for tr0ub4dor-and-3 (x)"), "auth failed for *** (x)");
    }

    #[test]
    fn secret_keys_are_redacted_in_printed_properties() {
        let props: BTreeMap<String, String> =
            [("sasl.password", "p"), ("bootstrap.servers", "b:1")].map(|(k, v)| (k.into(), v.into())).into();
        let shown = redacted(&props);
        assert_eq!((shown["sasl.password"].as_str(), shown["bootstrap.servers"].as_str()), ("***", "b:1"));
    }
}

//! Kafka security: TLS and SASL (PLAIN, SCRAM) from the `[kafka.security]` table, with secrets
//! that come from the environment or a file — never from the configuration text itself, so
//! configs can be committed and printed — and that are redacted wherever tidal prints a
//! configuration or a client error.
//!
//! ```toml
//! [kafka.security]
//! protocol = "SASL_SSL"                        # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
//! sasl_mechanism = "SCRAM-SHA-512"             # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
//! username = "tidal-processor"
//! password = { env = "TIDAL_KAFKA_PASSWORD" }  # or { file = "/run/secrets/kafka-password" }
//! ca_location = "/etc/tidal/ca.pem"            # TLS: the brokers' CA (default: system store)
//! # certificate_location / key_location / key_password: client certificate (mutual TLS)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// Where a secret comes from. Deserialised from `{ env = "NAME" }` or `{ file = "/path" }`; a
/// literal string is refused with a hint.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Secret {
    /// An environment variable's value.
    Env(String),
    /// A file's content, without its trailing newline (Kubernetes and Docker secrets).
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(name) => write!(f, "Secret(env {name})"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
        }
    }
}

impl Secret {
    /// Reads the secret now. `what` names the setting in errors.
    pub fn resolve(&self, what: &str) -> Result<SecretString> {
        let value = match self {
            Secret::Env(name) => std::env::var(name)
                .map_err(|_| Error::Config(format!("{what}: environment variable {name} is not set (or not UTF-8)")))?,
            Secret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{what}: cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(Error::Config(format!("{what}: the secret is empty")));
        }
        Ok(SecretString::new(value))
    }
}

/// `[kafka.security]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (SASL protocols only).
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretField>,
    /// PEM file of the CA that signed the brokers' certificates.
    pub ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    pub key_password: Option<SecretField>,
}

/// A secret as written in the config: `{ env = ... }`, `{ file = ... }`, or — refused — a literal.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretField {
    Source(Secret),
    Literal(String),
}

impl fmt::Debug for SecretField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretField::Source(secret) => secret.fmt(f),
            SecretField::Literal(_) => f.write_str("Secret(literal, refused)"),
        }
    }
}

impl SecretField {
    fn resolve(&self, what: &str) -> Result<SecretString> {
        match self {
            SecretField::Source(secret) => secret.resolve(what),
            SecretField::Literal(_) => Err(Error::Config(format!(
                "{what} is written in the configuration: put it in the environment or a file instead, \
                 e.g. {{ env = \"TIDAL_KAFKA_PASSWORD\" }} or {{ file = \"/run/secrets/kafka-password\" }}"
            ))),
        }
    }
}

const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl SecurityConfig {
    /// The librdkafka properties, secrets resolved. Checks the combination first, so that a
    /// mistake is reported as a configuration error rather than as a failed connection.
    pub fn librdkafka_properties(&self) -> Result<BTreeMap<String, String>> {
        let mut props = BTreeMap::new();
        let Some(protocol) = &self.protocol else {
            if self.sasl_mechanism.is_some() || self.username.is_some() || self.password.is_some() {
                return Err(Error::Config(
                    "kafka.security: SASL settings given without protocol = \"SASL_SSL\" or \"SASL_PLAINTEXT\"".into(),
                ));
            }
            return Ok(props);
        };
        let protocol = protocol.to_ascii_uppercase();
        if !PROTOCOLS.contains(&protocol.as_str()) {
            return Err(Error::Config(format!("kafka.security.protocol = '{protocol}': use one of {PROTOCOLS:?}")));
        }
        props.insert("security.protocol".into(), protocol.clone());
        if protocol.starts_with("SASL") {
            let mechanism = self.sasl_mechanism.as_deref().unwrap_or("SCRAM-SHA-512").to_ascii_uppercase();
            if !MECHANISMS.contains(&mechanism.as_str()) {
                return Err(Error::Config(format!(
                    "kafka.security.sasl_mechanism = '{mechanism}': use one of {MECHANISMS:?}"
                )));
            }
            let username = self
                .username
                .as_ref()
                .ok_or_else(|| Error::Config(format!("kafka.security: {protocol} needs username and password")))?;
            let password = self
                .password
                .as_ref()
                .ok_or_else(|| Error::Config(format!("kafka.security: {protocol} needs a password")))?
                .resolve("kafka.security.password")?;
            props.insert("sasl.mechanism".into(), mechanism);
            props.insert("sasl.username".into(), username.clone());
            props.insert("sasl.password".into(), password.expose().to_string());
        } else if self.sasl_mechanism.is_some() || self.password.is_some() {
            return Err(Error::Config(format!(
                "kafka.security: sasl_mechanism/password need protocol SASL_SSL or SASL_PLAINTEXT, not {protocol}"
            )));
        }
        let tls_files = [
            ("ssl.ca.location", &self.ca_location),
            ("ssl.certificate.location", &self.certificate_location),
            ("ssl.key.location", &self.key_location),
        ];
        for (key, path) in tls_files {
            let Some(path) = path else { continue };
            if !protocol.ends_with("SSL") {
                return Err(Error::Config(format!("kafka.security: {key} needs protocol SSL or SASL_SSL")));
            }
            if !path.is_file() {
                return Err(Error::Config(format!("kafka.security: {key} {} is not a file", path.display())));
            }
            props.insert(key.into(), path.display().to_string());
        }
        if let Some(key_password) = &self.key_password {
            let key_password = key_password.resolve("kafka.security.key_password")?;
            props.insert("ssl.key.password".into(), key_password.expose().to_string());
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{redacted, scrub};

    fn parse(text: &str) -> SecurityConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn sasl_from_an_environment_variable() {
        std::env::set_var("TIDAL_TEST_SECRET_1", "s3cret-value");
        let config = parse(
            "protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-256\"\nusername = \"u\"\n\
             password = { env = \"TIDAL_TEST_SECRET_1\" }\n",
        );
        let props = config.librdkafka_properties().unwrap();
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-256");
        assert_eq!(props["sasl.password"], "s3cret-value");
        let printed = format!("{config:?} {:?}", redacted(&props));
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(printed.contains("TIDAL_TEST_SECRET_1"), "says where the secret comes from: {printed}");
        assert_eq!(scrub("bad credentials s3cret-value for u"), "bad credentials *** for u");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let config = parse(&format!(
            "protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = {{ file = {:?} }}\n",
            path.display().to_string()
        ));
        assert_eq!(config.librdkafka_properties().unwrap()["sasl.password"], "from-a-file");
    }

    #[test]
    fn a_literal_password_is_refused_with_the_fix() {
        let config = parse("protocol = \"SASL_SSL\"\nusername = \"u\"\npassword = \"hunter2\"\n");
        let err = config.librdkafka_properties().unwrap_err().to_string();
        assert!(err.contains("environment or a file") && err.contains("{ env ="), "{err}");
        assert!(!err.contains("hunter2") && !format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn mistakes_are_configuration_errors() {
        let missing =
            parse("protocol = \"SASL_SSL\"\nusername = \"u\"\npassword = { env = \"TIDAL_TEST_UNSET_VAR\" }\n");
        assert!(missing.librdkafka_properties().unwrap_err().to_string().contains("TIDAL_TEST_UNSET_VAR is not set"));
        let protocol = parse("protocol = \"TLS\"\n");
        assert!(protocol.librdkafka_properties().unwrap_err().to_string().contains("SASL_SSL"));
        let mechanism = parse("protocol = \"SASL_SSL\"\nsasl_mechanism = \"GSSAPI\"\nusername = \"u\"\n");
        assert!(mechanism.librdkafka_properties().unwrap_err().to_string().contains("SCRAM-SHA-512"));
        let no_protocol = parse("username = \"u\"\n");
        assert!(no_protocol.librdkafka_properties().is_err());
        let ca_without_tls = parse("protocol = \"SASL_PLAINTEXT\"\nusername = \"u\"\npassword = { env = \"HOME\" }\nca_location = \"/etc/hostname\"\n");
        assert!(ca_without_tls.librdkafka_properties().unwrap_err().to_string().contains("needs protocol SSL"));
        assert!(parse("").librdkafka_properties().unwrap().is_empty(), "no table: plaintext, nothing set");
    }

    #[test]
    fn redaction_covers_secret_keys() {
        let props: BTreeMap<String, String> = [
            ("sasl.password".to_string(), "p4ssword".to_string()),
            ("sasl.username".to_string(), "user".to_string()),
            ("ssl.key.password".to_string(), "keypass".to_string()),
        ]
        .into();
        let shown = redacted(&props);
        assert_eq!(shown["sasl.password"], "***");
        assert_eq!(shown["ssl.key.password"], "***");
        assert_eq!(shown["sasl.username"], "user");
    }
}

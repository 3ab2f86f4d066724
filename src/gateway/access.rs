//! Who may call the gateway, and which models: API keys bound to tenants.
//!
//! A gateway exposed to many teams must know who sends each request (to grant models, to apply a
//! quota, to say in the metrics whose traffic it is) without keeping anything that would let a
//! reader of its configuration call it. So the tenants file holds only the SHA-256 of each key;
//! a caller sends the key as `Authorization: Bearer <key>`; the gateway hashes it and looks the
//! hash up. Keys are random 256-bit strings (`tidal api-key` makes one), so a plain hash is
//! enough: there is no password to guess from it. Keys are never logged or echoed back.
//!
//! ```toml
//! [[tenants]]
//! name = "search"
//! key_sha256 = ["<64 hex digits>"]  # several keys: rotate without downtime
//! models = ["sentiment"]            # or ["*"]: every model the gateway serves
//! rate_per_s = 20.0                 # token bucket: sustained requests per second ...
//! burst = 40                        # ... and how many may come at once
//! priority = false                  # true: its requests take the models' priority lanes
//! ```

use std::collections::HashMap;
use std::path::Path;

use ring::digest::{digest, SHA256};
use serde::Deserialize;

use super::quota::TokenBucket;
use crate::error::{Error, Result};

/// Prefix of the keys `tidal api-key` makes (recognisable in a secret scanner).
pub const KEY_PREFIX: &str = "tdl_";

/// One tenant as the tenants file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: String,
    /// Hex SHA-256 of each key the tenant may use.
    pub key_sha256: Vec<String>,
    /// Models it may call; `"*"` for all.
    pub models: Vec<String>,
    /// Sustained requests per second (no limit when absent).
    pub rate_per_s: Option<f64>,
    /// Requests that may come at once above the rate (default: one second's worth, at least 1).
    pub burst: Option<u32>,
    /// Its requests go to the models' priority topics (`<request_prefix><model>.priority`).
    #[serde(default)]
    pub priority: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    tenants: Vec<TenantSpec>,
}

/// A tenant known to the gateway.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    models: Vec<String>,
    /// Its quota, if it has one.
    pub bucket: Option<TokenBucket>,
    /// Its requests take the priority lanes.
    pub priority: bool,
}

impl Tenant {
    /// Whether it may call `model`.
    pub fn may_call(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == model)
    }
}

/// Why a call was refused before it reached Kafka.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    NoKey,
    /// A key no tenant holds (401).
    UnknownKey,
}

/// Every tenant, found by the hash of its keys.
#[derive(Debug)]
pub struct Tenants {
    tenants: Vec<Tenant>,
    by_key_hash: HashMap<[u8; 32], usize>,
}

impl Tenants {
    /// Reads a tenants file (see the module documentation).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read the tenants file {}: {e}", path.display())))?;
        let file: TenantsFile = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("the tenants file {} is not valid: {e}", path.display())))?;
        Tenants::new(file.tenants).map_err(|e| Error::Config(format!("the tenants file {}: {e}", path.display())))
    }

    /// Checks the declarations.
    pub fn new(specs: Vec<TenantSpec>) -> std::result::Result<Self, String> {
        if specs.is_empty() {
            return Err("no tenants: declare at least one [[tenants]] (or start without --tenants)".into());
        }
        let mut tenants = Vec::new();
        let mut by_key_hash = HashMap::new();
        for spec in specs {
            let name = spec.name.trim().to_string();
            if name.is_empty() || tenants.iter().any(|t: &Tenant| t.name == name) {
                return Err(format!("tenant names must be non-empty and distinct ('{name}')"));
            }
            if spec.key_sha256.is_empty() {
                return Err(format!(
                    "tenant '{name}' has no key_sha256: make one with `tidal api-key --tenant {name}`"
                ));
            }
            for hex in &spec.key_sha256 {
                let hash = parse_sha256(hex).ok_or_else(|| {
                    format!("tenant '{name}': '{hex}' is not a SHA-256 in hex (64 digits); `tidal api-key` prints one")
                })?;
                if by_key_hash.insert(hash, tenants.len()).is_some() {
                    return Err(format!("tenant '{name}': a key hash is declared twice"));
                }
            }
            if spec.models.is_empty() {
                return Err(format!("tenant '{name}' may call no model: list them in `models` (or \"*\")"));
            }
            let bucket = match spec.rate_per_s {
                None => None,
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    let burst = spec.burst.unwrap_or(rate.ceil() as u32).max(1);
                    Some(TokenBucket::new(rate, burst))
                }
                Some(rate) => return Err(format!("tenant '{name}': rate_per_s must be above 0 (is {rate})")),
            };
            tenants.push(Tenant { name, models: spec.models, bucket, priority: spec.priority });
        }
        Ok(Tenants { tenants, by_key_hash })
    }

    /// Checks that every granted model is served.
    pub fn check_models(&self, served: &[String]) -> std::result::Result<(), String> {
        for tenant in &self.tenants {
            if let Some(unknown) = tenant.models.iter().find(|m| *m != "*" && !served.contains(m)) {
                return Err(format!(
                    "tenant '{}': model '{unknown}' is not one this gateway serves ({served:?})",
                    tenant.name
                ));
            }
        }
        Ok(())
    }

    /// The served models some priority tenant may call (their priority topics must exist).
    pub fn priority_models(&self, served: &[String]) -> Vec<String> {
        served.iter().filter(|m| self.tenants.iter().any(|t| t.priority && t.may_call(m))).cloned().collect()
    }

    /// The tenant holding the key in an `Authorization` header's value.
    pub fn authenticate(&self, authorization: Option<&str>) -> std::result::Result<&Tenant, Denied> {
        let key = authorization
            .and_then(|value| value.trim().strip_prefix("Bearer ").or_else(|| value.trim().strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(Denied::NoKey)?;
        self.by_key_hash.get(&hash_key(key)).map(|&i| &self.tenants[i]).ok_or(Denied::UnknownKey)
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, key.as_bytes()).as_ref());
    out
}

/// Hex of a key's SHA-256, as the tenants file holds it.
pub fn hash_key_hex(key: &str) -> String {
    hash_key(key).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key: the prefix and 256 random bits in hex.
pub fn new_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Config("the operating system's random source failed; retry".into()))?;
    Ok(format!("{KEY_PREFIX}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, key: &str, models: &[&str]) -> TenantSpec {
        TenantSpec {
            name: name.into(),
            key_sha256: vec![hash_key_hex(key)],
            models: models.iter().map(|m| m.to_string()).collect(),
            rate_per_s: None,
            burst: None,
            priority: false,
        }
    }

    #[test]
    fn a_key_finds_its_tenant_and_only_its_models() {
        let tenants =
            Tenants::new(vec![spec("search", "k-search", &["sentiment"]), spec("ops", "k-ops", &["*"])]).unwrap();
        let search = tenants.authenticate(Some("Bearer k-search")).unwrap();
        assert_eq!(search.name, "search");
        assert!(search.may_call("sentiment") && !search.may_call("ocr"));
        assert!(tenants.authenticate(Some("Bearer k-ops")).unwrap().may_call("ocr"));
    }

    #[test]
    fn priority_topics_are_needed_for_the_models_priority_tenants_may_call() {
        let mut premium = spec("premium", "k-p", &["ocr"]);
        premium.priority = true;
        let tenants = Tenants::new(vec![premium, spec("search", "k-s", &["*"])]).unwrap();
        let served = vec!["sentiment".to_string(), "ocr".to_string()];
        assert_eq!(tenants.priority_models(&served), vec!["ocr".to_string()]);
    }

    #[test]
    fn missing_and_unknown_keys_are_told_apart() {
        let tenants = Tenants::new(vec![spec("search", "k-search", &["*"])]).unwrap();
        assert_eq!(tenants.authenticate(None).unwrap_err(), Denied::NoKey);
        assert_eq!(tenants.authenticate(Some("Basic dXNlcg==")).unwrap_err(), Denied::NoKey);
        assert_eq!(tenants.authenticate(Some("Bearer ")).unwrap_err(), Denied::NoKey);
        assert_eq!(tenants.authenticate(Some("Bearer k-other")).unwrap_err(), Denied::UnknownKey);
        // The hash of a key is not a key.
        let hash = hash_key_hex("k-search");
        assert_eq!(tenants.authenticate(Some(&format!("Bearer {hash}"))).unwrap_err(), Denied::UnknownKey);
    }

    #[test]
    fn declarations_that_cannot_work_are_refused_with_the_fix() {
        let dup = Tenants::new(vec![spec("a", "k", &["*"]), spec("a", "k2", &["*"])]).unwrap_err();
        assert!(dup.contains("distinct"), "{dup}");
        let shared = Tenants::new(vec![spec("a", "k", &["*"]), spec("b", "k", &["*"])]).unwrap_err();
        assert!(shared.contains("twice"), "{shared}");
        let mut bad_hash = spec("a", "k", &["*"]);
        bad_hash.key_sha256 = vec!["k".into()];
        assert!(Tenants::new(vec![bad_hash]).unwrap_err().contains("tidal api-key"));
        let served = vec!["sentiment".to_string()];
        let unknown = Tenants::new(vec![spec("a", "k", &["ocr"])]).unwrap().check_models(&served).unwrap_err();
        assert!(unknown.contains("'ocr'"), "{unknown}");
        let mut zero = spec("a", "k", &["*"]);
        zero.rate_per_s = Some(0.0);
        assert!(Tenants::new(vec![zero]).unwrap_err().contains("rate_per_s"));
    }

    #[test]
    fn new_keys_are_random_and_hash_to_64_hex_digits() {
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64, "{a}");
        assert_eq!(parse_sha256(&hash_key_hex(&a)), Some(hash_key(&a)));
        // The published SHA-256 of "abc".
        assert_eq!(hash_key_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

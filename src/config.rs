//! Configuration: one TOML file, every key overridable by `MULTIGUNA__SECTION__KEY`.
//!
//! The file is read once at start-up into plain structs; the rest of the switch gets
//! typed, validated values (amounts already in minor units, purses as enums), so no
//! module parses configuration strings on the hot path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::domain::money::{rupiah_to_minor, Purse};
use crate::domain::request::TxnType;

/// The embedded default, compiled in so `multiguna demo` and tests need no files.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "MULTIGUNA__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Toml(String),
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub switch: SwitchConfig,
    pub database: DatabaseConfig,
    pub authoriser: AuthoriserConfig,
    pub admin: AdminConfig,
    pub security: SecurityConfig,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub acquirers: Vec<AcquirerConfig>,
    #[serde(default)]
    pub programmes: Vec<ProgrammeConfig>,
    #[serde(default)]
    pub log: LogConfig,
}

/// Logging: `tracing` to stderr. `MULTIGUNA_LOG` (a filter such as `debug`) overrides
/// `level` for one run.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `multiguna=debug,sqlx=warn`, ...
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `human` (default) or `json` (one JSON object a line, for log shippers).
    #[serde(default = "default_log_format")]
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

fn default_log_level() -> String {
    "info,sqlx=warn".into()
}

fn default_log_format() -> String {
    "human".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct SwitchConfig {
    pub default_programme: String,
    pub business_day_cutover: String,
    pub utc_offset_minutes: i32,
    pub idempotency_window_hours: u32,
    /// At most this many decisions are remembered, whatever the window: memory is set by
    /// configuration, not by traffic. Past it the oldest are forgotten early (counted in
    /// `multiguna_idempotency_evicted_total`).
    #[serde(default = "default_idempotency_decisions_max")]
    pub idempotency_decisions_max: usize,
    pub sync_interval_ms: u64,
    /// How often balances are checkpointed, so start-up reads a checkpoint plus what
    /// came after it instead of all history.
    #[serde(default = "default_checkpoint_interval_s")]
    pub checkpoint_interval_s: u64,
    /// How often the projector copies new ledger batches into the card and account
    /// histories (ledger/projection.rs). Readers read what it has not copied yet from
    /// the ledger itself, so this sets their cost, never what they see.
    #[serde(default = "default_projection_interval_ms")]
    pub projection_interval_ms: u64,
}

fn default_projection_interval_ms() -> u64 {
    10_000
}

fn default_idempotency_decisions_max() -> usize {
    crate::authoriser::state::Journal::LEN_MAX_DEFAULT
}

fn default_checkpoint_interval_s() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthoriserConfig {
    pub queue_depth_max: usize,
    pub batch_size_max: usize,
}

#[derive(Clone, Deserialize)]
pub struct AdminConfig {
    pub bind: String,
    pub token: String,
    /// HTTPS on the admin port when set; plain HTTP otherwise (the default, bound to
    /// loopback).
    #[serde(default)]
    pub tls: Option<TlsIdentityConfig>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("bind", &self.bind)
            .field("token", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
pub struct SecurityConfig {
    pub pin_verification_key: String,
    pub decimalisation_table: String,
    pub pin_length: usize,
    pub pin_tries_max: u8,
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("pin_verification_key", &"<redacted>")
            .field("pin_length", &self.pin_length)
            .field("pin_tries_max", &self.pin_tries_max)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Framing {
    #[serde(rename = "len2")]
    Len2,
    #[serde(rename = "len4-ascii")]
    Len4Ascii,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: String,
    pub framing: Framing,
    pub max_frame: usize,
    pub connections_max: usize,
    pub idle_timeout_s: u64,
    pub inflight_per_connection_max: usize,
    /// TLS on this listener when set; plain TCP otherwise (the default).
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
}

/// The server's certificate chain and private key, both PEM. `key` is a file path, or
/// `file:PATH` / `env:NAME` as for the other secrets (`env:` holds the PEM text itself).
/// `Debug` shows only where the key comes from, which is what the field holds.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsIdentityConfig {
    pub cert: PathBuf,
    pub key: String,
}

/// `[listeners.tls]`: the identity, and for mutual TLS the CA that signs the acquirer
/// links' client certificates and which acquirer each certificate speaks for.
#[derive(Debug, Clone, Deserialize)]
pub struct ListenerTlsConfig {
    /// `cert` and `key`, as for the admin port.
    #[serde(flatten)]
    pub identity: TlsIdentityConfig,
    /// When set, every client must present a certificate signed by this CA (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificate subject CN -> the one acquirer id (F32) that link may send.
    #[serde(default, deserialize_with = "acquirer_ids")]
    pub acquirers: BTreeMap<String, String>,
    /// A peer that has not finished its handshake by then is closed.
    #[serde(default = "default_handshake_timeout_s")]
    pub handshake_timeout_s: u64,
}

fn default_handshake_timeout_s() -> u64 {
    10
}

/// Acquirer ids are digit strings; an environment override such as
/// `MULTIGUNA__LISTENERS__0__TLS__ACQUIRERS__ATM-BERSAMA=360001` arrives as a number.
fn acquirer_ids<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    let raw = BTreeMap::<String, Id>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(cn, id)| match id {
            Id::Text(text) => (cn, text),
            Id::Number(n) => (cn, n.to_string()),
        })
        .collect())
}

#[derive(Clone, Deserialize)]
pub struct AcquirerConfig {
    pub id: String,
    pub name: String,
    pub amount_exponent: u32,
    pub channels: Vec<String>,
    #[serde(default)]
    pub zone_pin_key: String,
}

impl std::fmt::Debug for AcquirerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquirerConfig")
            .field("id", &self.id)
            .field("amount_exponent", &self.amount_exponent)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProgrammeConfig {
    pub id: String,
    pub name: String,
    pub hold_ttl_s: u64,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CreditTarget {
    /// The acquirer's settlement account (ATM, minimarket, bus).
    #[default]
    Acquirer,
    /// The provider named in F42, registered for the channel (clinic, school).
    Provider,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    pub name: String,
    pub mccs: Vec<u16>,
    pub types: Vec<String>,
    pub purses: BTreeMap<String, Vec<String>>,
    pub pin_required: bool,
    #[serde(default)]
    pub service_required: bool,
    /// Terminals of this channel approve offline and send 0220 advices that must post.
    #[serde(default)]
    pub offline_advices: bool,
    #[serde(default)]
    pub credit: CreditTarget,
    pub amount_max: Option<Decimal>,
    pub amount_multiple: Option<Decimal>,
    pub daily_amount_max: Option<Decimal>,
    pub daily_count_max: Option<u32>,
}

impl Config {
    /// Reads `path` (or the embedded default when `None`) and applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => DEFAULT_TOML.to_string(),
        };
        Self::from_toml_with_env(&text, std::env::vars())
    }

    pub fn from_toml_with_env(
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().to_string()))?;
        for (key, raw) in env {
            if let Some(path) = key.strip_prefix(ENV_PREFIX) {
                apply_override(&mut value, path, &raw)?;
            }
        }
        let mut config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.message().to_string()))?;
        config.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }

    /// Keys may be given as `file:/path` (a key file, e.g. mounted by the secret store) or
    /// `env:NAME`; the value read replaces the reference. Errors name the setting, never
    /// the value.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret(
            "security.pin_verification_key",
            &mut self.security.pin_verification_key,
        )?;
        resolve_secret("admin.token", &mut self.admin.token)?;
        for acquirer in &mut self.acquirers {
            let name = format!("acquirers.{}.zone_pin_key", acquirer.id);
            resolve_secret(&name, &mut acquirer.zone_pin_key)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.switch.idempotency_decisions_max == 0 {
            return Err(ConfigError::Invalid(
                "switch idempotency_decisions_max must be > 0".into(),
            ));
        }
        if self.authoriser.batch_size_max == 0 || self.authoriser.queue_depth_max == 0 {
            return Err(ConfigError::Invalid(
                "authoriser batch_size_max and queue_depth_max must be > 0".into(),
            ));
        }
        if !self
            .programmes
            .iter()
            .any(|p| p.id == self.switch.default_programme)
        {
            return Err(ConfigError::Invalid(format!(
                "default_programme {} is not a configured programme",
                self.switch.default_programme
            )));
        }
        for acquirer in &self.acquirers {
            if acquirer.amount_exponent != 0 && acquirer.amount_exponent != 2 {
                return Err(ConfigError::Invalid(format!(
                    "acquirer {}: amount_exponent must be 0 or 2",
                    acquirer.id
                )));
            }
        }
        for listener in &self.listeners {
            if let Some(tls) = &listener.tls {
                self.validate_listener_tls(&listener.name, tls)?;
            }
        }
        for programme in &self.programmes {
            for channel in &programme.channels {
                channel.compile().map_err(|e| {
                    ConfigError::Invalid(format!("programme {}: {e}", programme.id))
                })?;
            }
        }
        Ok(())
    }

    /// Mutual TLS and the CN map go together: a map without client certificates would
    /// bind nothing, and client certificates without a map would admit no one.
    fn validate_listener_tls(
        &self,
        name: &str,
        tls: &ListenerTlsConfig,
    ) -> Result<(), ConfigError> {
        let invalid =
            |why: String| Err(ConfigError::Invalid(format!("listener {name}: tls: {why}")));
        let mutual = tls.client_ca.is_some();
        let mapped = !tls.acquirers.is_empty();
        if mutual != mapped {
            return invalid("client_ca and acquirers must be set together".into());
        }
        if tls.handshake_timeout_s == 0 {
            return invalid("handshake_timeout_s must be > 0".into());
        }
        for (cn, id) in &tls.acquirers {
            if !self.acquirers.iter().any(|a| &a.id == id) {
                return invalid(format!(
                    "acquirers.{cn} = {id} is not a configured acquirer"
                ));
            }
        }
        Ok(())
    }

    pub fn programme(&self, id: &str) -> Option<&ProgrammeConfig> {
        self.programmes.iter().find(|p| p.id == id)
    }
}

/// Sets `a__b__c` (already lower-cased) in the TOML tree. The raw value is read as a
/// TOML scalar when it parses as one (numbers, booleans), else as a string, so
/// `MULTIGUNA__AUTHORISER__BATCH_SIZE_MAX=64` stays a number.
fn apply_override(root: &mut toml::Value, path: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let table = match node {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                // LISTENERS__0__BIND: an index into an array of tables.
                let index: usize = part.parse().map_err(|_| {
                    ConfigError::Invalid(format!("MULTIGUNA__{path}: {part} is not an index"))
                })?;
                let len = items.len();
                node = items.get_mut(index).ok_or_else(|| {
                    ConfigError::Invalid(format!("MULTIGUNA__{path}: index {index} >= {len}"))
                })?;
                continue;
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "MULTIGUNA__{path}: {part} is not a section"
                )))
            }
        };
        if last {
            table.insert(part.clone(), scalar(raw));
            return Ok(());
        }
        node = table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

pub(crate) fn resolve_secret(name: &str, value: &mut String) -> Result<(), ConfigError> {
    let resolved = if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!("{name}: cannot read key file {path}: {e}"))
        })?
    } else if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| {
            ConfigError::Invalid(format!("{name}: environment variable {var} is not set"))
        })?
    } else {
        return Ok(());
    };
    *value = resolved.trim().to_string();
    Ok(())
}

fn scalar(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
            ) => v,
            Some(v @ toml::Value::Array(_)) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// A channel's rules with amounts in minor units and names resolved to enums.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    pub name: String,
    pub mccs: Vec<u16>,
    pub types: Vec<TxnType>,
    /// Purse order per transaction type; a type missing here may use every purse.
    pub purses: Vec<(TxnType, Vec<Purse>)>,
    pub pin_required: bool,
    pub service_required: bool,
    pub offline_advices: bool,
    pub credit: CreditTarget,
    pub amount_max_minor: Option<i64>,
    pub amount_multiple_minor: Option<i64>,
    pub daily_amount_max_minor: Option<i64>,
    pub daily_count_max: Option<u32>,
}

impl ChannelConfig {
    pub fn compile(&self) -> Result<ChannelRules, String> {
        let name = &self.name;
        let types = self
            .types
            .iter()
            .map(|t| TxnType::from_code(t).ok_or(format!("channel {name}: unknown type {t}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut purses = Vec::new();
        for (code, list) in &self.purses {
            let txn_type =
                TxnType::from_code(code).ok_or(format!("channel {name}: unknown type {code}"))?;
            let order = list
                .iter()
                .map(|p| Purse::from_name(p).ok_or(format!("channel {name}: unknown purse {p}")))
                .collect::<Result<Vec<_>, _>>()?;
            purses.push((txn_type, order));
        }
        let minor = |v: &Option<Decimal>, what: &str| -> Result<Option<i64>, String> {
            v.map(|d| rupiah_to_minor(d).ok_or(format!("channel {name}: bad {what}")))
                .transpose()
        };
        Ok(ChannelRules {
            name: name.clone(),
            mccs: self.mccs.clone(),
            types,
            purses,
            pin_required: self.pin_required,
            service_required: self.service_required,
            offline_advices: self.offline_advices,
            credit: self.credit,
            amount_max_minor: minor(&self.amount_max, "amount_max")?,
            amount_multiple_minor: minor(&self.amount_multiple, "amount_multiple")?,
            daily_amount_max_minor: minor(&self.daily_amount_max, "daily_amount_max")?,
            daily_count_max: self.daily_count_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_validates() {
        let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
        assert_eq!(config.switch.default_programme, "jamsosratu");
        assert_eq!(config.programmes[0].channels.len(), 5);
    }

    #[test]
    fn environment_overrides_nested_keys_and_keeps_numbers() {
        let env = vec![
            (
                "MULTIGUNA__DATABASE__URL".to_string(),
                "postgres://x/y".to_string(),
            ),
            (
                "MULTIGUNA__AUTHORISER__BATCH_SIZE_MAX".to_string(),
                "64".to_string(),
            ),
            (
                "MULTIGUNA__LISTENERS__0__BIND".to_string(),
                "127.0.0.1:0".to_string(),
            ),
        ];
        let config = Config::from_toml_with_env(DEFAULT_TOML, env.into_iter()).unwrap();
        assert_eq!(config.database.url, "postgres://x/y");
        assert_eq!(config.authoriser.batch_size_max, 64);
        assert_eq!(config.listeners[0].bind, "127.0.0.1:0");
    }

    #[test]
    fn keys_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pvk");
        std::fs::write(&path, "00112233445566778899AABBCCDDEEFF\n").unwrap();
        let env = vec![
            (
                "MULTIGUNA__SECURITY__PIN_VERIFICATION_KEY".to_string(),
                format!("file:{}", path.display()),
            ),
            (
                "MULTIGUNA__ADMIN__TOKEN".to_string(),
                "env:MULTIGUNA_TEST_TOKEN_NOT_SET".to_string(),
            ),
        ];
        let err = Config::from_toml_with_env(DEFAULT_TOML, env.clone().into_iter()).unwrap_err();
        assert!(err.to_string().contains("MULTIGUNA_TEST_TOKEN_NOT_SET"));
        let config = Config::from_toml_with_env(DEFAULT_TOML, env.into_iter().take(1)).unwrap();
        assert_eq!(
            config.security.pin_verification_key,
            "00112233445566778899AABBCCDDEEFF"
        );
    }

    fn tls_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "MULTIGUNA__LISTENERS__0__TLS__CERT",
                "/etc/multiguna/iso.pem",
            ),
            ("MULTIGUNA__LISTENERS__0__TLS__KEY", "env:ISO_TLS_KEY"),
        ];
        env.extend_from_slice(extra);
        env.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tls_is_off_by_default_and_set_per_listener_from_the_environment() {
        let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
        assert!(config.listeners[0].tls.is_none() && config.admin.tls.is_none());
        let env = tls_env(&[
            (
                "MULTIGUNA__LISTENERS__0__TLS__CLIENT_CA",
                "/etc/multiguna/acq-ca.pem",
            ),
            (
                "MULTIGUNA__LISTENERS__0__TLS__ACQUIRERS__ATM-BERSAMA",
                "360001",
            ),
        ]);
        let config = Config::from_toml_with_env(DEFAULT_TOML, env.into_iter()).unwrap();
        let tls = config.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.identity.key, "env:ISO_TLS_KEY");
        assert_eq!(tls.acquirers["atm-bersama"], "360001");
        assert_eq!(tls.handshake_timeout_s, 10);
    }

    #[test]
    fn client_ca_and_the_acquirer_map_go_together_and_name_configured_acquirers() {
        let ca = ("MULTIGUNA__LISTENERS__0__TLS__CLIENT_CA", "/ca.pem");
        let unknown = ("MULTIGUNA__LISTENERS__0__TLS__ACQUIRERS__X", "999999");
        for extra in [vec![ca], vec![unknown], vec![ca, unknown]] {
            let env = tls_env(&extra);
            let err = Config::from_toml_with_env(DEFAULT_TOML, env.into_iter()).unwrap_err();
            assert!(err.to_string().contains("listener iso: tls"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_keys_or_tokens() {
        let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains(&config.admin.token));
        assert!(!text.contains(&config.security.pin_verification_key));
        assert!(!text.contains(&config.acquirers[0].zone_pin_key));
    }
}

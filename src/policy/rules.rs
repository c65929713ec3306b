//! Configuration compiled into lookup tables the authoriser reads on every request.

use std::collections::HashMap;

use crate::config::{ChannelRules, Config};
use crate::domain::time::BusinessCalendar;
use crate::security::keys::TdesKey;
use crate::security::pin::DecimalisationTable;

#[derive(Debug, Clone)]
pub struct AcquirerRules {
    pub id: String,
    pub amount_exponent: u32,
    pub channels: Vec<String>,
    /// The link's zone PIN key; `None` when none is configured (PIN channels then fail 55).
    pub zone_pin_key: Option<TdesKey>,
}

#[derive(Debug, Clone)]
pub struct ProgrammeRules {
    pub id: String,
    pub channels: Vec<ChannelRules>,
    pub hold_ttl_ms: i64,
}

impl ProgrammeRules {
    /// The channel an MCC selects in this programme.
    pub fn channel_for_mcc(&self, mcc: u16) -> Option<(usize, &ChannelRules)> {
        self.channels
            .iter()
            .enumerate()
            .find(|(_, c)| c.mccs.contains(&mcc))
    }
}

/// Everything the policy needs from configuration, indexed once at start-up.
#[derive(Debug, Clone)]
pub struct Policy {
    pub acquirers: HashMap<String, AcquirerRules>,
    pub programmes: Vec<ProgrammeRules>,
    pub calendar: BusinessCalendar,
    pub pin_tries_max: u8,
    pub idempotency_window_ms: i64,
    /// The count bound of the same memory (`switch.idempotency_decisions_max`).
    pub idempotency_decisions_max: usize,
    pub pin_verification_key: TdesKey,
    pub decimalisation: DecimalisationTable,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Policy, String> {
        let calendar = BusinessCalendar::new(
            config.switch.utc_offset_minutes,
            &config.switch.business_day_cutover,
        )
        .ok_or("switch: bad utc_offset_minutes or business_day_cutover")?;
        let acquirers = config
            .acquirers
            .iter()
            .map(|a| {
                let rules = AcquirerRules {
                    id: a.id.clone(),
                    amount_exponent: a.amount_exponent,
                    channels: a.channels.clone(),
                    zone_pin_key: TdesKey::from_hex(&a.zone_pin_key).ok(),
                };
                (a.id.clone(), rules)
            })
            .collect();
        let programmes = config
            .programmes
            .iter()
            .map(|p| {
                let channels = p
                    .channels
                    .iter()
                    .map(|c| c.compile())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ProgrammeRules {
                    id: p.id.clone(),
                    channels,
                    hold_ttl_ms: i64::try_from(p.hold_ttl_s).unwrap_or(i64::MAX / 1000) * 1000,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Policy {
            acquirers,
            programmes,
            calendar,
            pin_tries_max: config.security.pin_tries_max.max(1),
            idempotency_window_ms: i64::from(config.switch.idempotency_window_hours) * 3_600_000,
            idempotency_decisions_max: config.switch.idempotency_decisions_max,
            pin_verification_key: TdesKey::from_hex(&config.security.pin_verification_key)
                .map_err(|e| format!("security.pin_verification_key: {e}"))?,
            decimalisation: DecimalisationTable::parse(&config.security.decimalisation_table)
                .map_err(|e| format!("security.decimalisation_table: {e}"))?,
        })
    }

    /// Says which keys are loaded by their check values (KCV), never the keys, so an
    /// operator can compare them with the key ceremony's record.
    pub fn log_key_check_values(&self) {
        tracing::info!(kcv = %self.pin_verification_key.kcv(), "PIN verification key loaded");
        for acquirer in self.acquirers.values() {
            match acquirer.zone_pin_key.as_ref() {
                Some(zpk) => {
                    tracing::info!(acquirer = %acquirer.id, kcv = %zpk.kcv(), "zone PIN key loaded")
                }
                None => {
                    tracing::warn!(acquirer = %acquirer.id, "no valid zone PIN key: PIN transactions on this link get 55")
                }
            }
        }
    }

    pub fn programme_index(&self, id: &str) -> Option<usize> {
        self.programmes.iter().position(|p| p.id == id)
    }
}

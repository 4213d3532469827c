//! Plans: the limits a tenant's plan name stands for.
//!
//! The database stores only a tenant's plan *name*; what it means comes from configuration
//! (`--plans`, a TOML file) or the built-in plans, so an operator can change the limits of every
//! tenant on a plan by editing one file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The limits of one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Concurrent subscriber connections, across all edge processes.
    pub max_connections: u64,
    /// Publishes accepted per UTC day.
    pub messages_per_day: u64,
    /// Size of one event's data, in UTF-8 bytes as rendered on the `data:` lines.
    pub max_message_bytes: u64,
    /// Publishes per second per API key.
    pub publish_per_second: u64,
    /// The burst above `publish_per_second`.
    pub publish_burst: u64,
    /// Channels one stream may subscribe to.
    pub channels_per_connection: u64,
    /// Upper bound for a channel's `history_size`.
    pub max_history_size: u32,
    /// New streams per second for the whole tenant; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connects_per_second: Option<u64>,
}

/// Every configured plan, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plans {
    /// The plans.
    pub plans: BTreeMap<String, Plan>,
}

/// Why a plans file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    /// Not TOML of the expected shape.
    #[error("invalid plans file: {0}")]
    Invalid(#[from] toml::de::Error),
    /// The file defines no plan.
    #[error("the plans file defines no plan")]
    Empty,
}

impl Plans {
    /// The built-in plans: `free`, `pro` and `business`.
    pub fn builtin() -> Plans {
        let free = Plan {
            max_connections: 200,
            messages_per_day: 200_000,
            max_message_bytes: 65_536,
            publish_per_second: 50,
            publish_burst: 100,
            channels_per_connection: 16,
            max_history_size: 1000,
            connects_per_second: Some(100),
        };
        let pro = Plan {
            max_connections: 10_000,
            messages_per_day: 10_000_000,
            max_message_bytes: 262_144,
            publish_per_second: 500,
            publish_burst: 1000,
            channels_per_connection: 64,
            max_history_size: 10_000,
            connects_per_second: Some(1000),
        };
        let business = Plan {
            max_connections: 100_000,
            messages_per_day: 100_000_000,
            max_message_bytes: 1_048_576,
            publish_per_second: 5000,
            publish_burst: 10_000,
            channels_per_connection: 128,
            max_history_size: 100_000,
            connects_per_second: None,
        };
        Plans {
            plans: BTreeMap::from([
                ("free".to_owned(), free),
                ("pro".to_owned(), pro),
                ("business".to_owned(), business),
            ]),
        }
    }

    /// Parses a plans file: a `[plans.<name>]` table per plan.
    pub fn from_toml(text: &str) -> Result<Plans, PlansError> {
        let plans: Plans = toml::from_str(text)?;
        if plans.plans.is_empty() {
            return Err(PlansError::Empty);
        }
        Ok(plans)
    }

    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The limits a tenant on plan `name` gets. A name the configuration no longer has (a plan
    /// removed from the plans file) falls back to the `default` plan, then to any configured
    /// plan, then to the built-in `free` plan: a tenant always has limits.
    pub fn resolve(&self, name: &str, default: &str) -> &Plan {
        self.resolve_named(name, default).1
    }

    /// [`Plans::resolve`], with the name of the plan it picked: what a tenant's per-plan state
    /// (its rate limiters) is kept under.
    pub fn resolve_named(&self, name: &str, default: &str) -> (&str, &Plan) {
        static FREE: std::sync::LazyLock<Plan> =
            std::sync::LazyLock::new(|| Plans::builtin().plans["free"].clone());
        [name, default]
            .into_iter()
            .find_map(|n| self.plans.get_key_value(n))
            .or_else(|| self.plans.iter().next())
            .map(|(n, p)| (n.as_str(), p))
            .unwrap_or(("free", &FREE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_plan_falls_back_to_the_default_then_to_any_then_to_free() {
        let plans = Plans::builtin();
        assert_eq!(plans.resolve("pro", "free"), &plans.plans["pro"]);
        assert_eq!(plans.resolve("gone", "business"), &plans.plans["business"]);
        assert_eq!(plans.resolve("gone", "also-gone"), &plans.plans["business"]);
        let empty = Plans {
            plans: BTreeMap::new(),
        };
        assert_eq!(empty.resolve("gone", "free"), &plans.plans["free"]);
        assert_eq!(plans.resolve_named("gone", "pro").0, "pro");
        assert_eq!(plans.resolve_named("gone", "also-gone").0, "business");
        assert_eq!(empty.resolve_named("gone", "pro").0, "free");
    }

    #[test]
    fn a_plans_file_replaces_the_builtin_plans() {
        let plans = Plans::from_toml(
            r#"
            [plans.free]
            max_connections = 200
            messages_per_day = 200000
            max_message_bytes = 65536
            publish_per_second = 50
            publish_burst = 100
            channels_per_connection = 16
            max_history_size = 1000
            "#,
        )
        .unwrap();
        assert_eq!(plans.plans.len(), 1);
        assert_eq!(plans.get("free").unwrap().connects_per_second, None);
        assert!(Plans::from_toml("[plans]").is_err());
        assert!(Plans::from_toml("[plans.x]\nmax_connections = 1").is_err());
        assert!(Plans::builtin().get("free").is_some());
    }
}

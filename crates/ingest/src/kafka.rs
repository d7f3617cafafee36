//! librdkafka client configuration from [`KafkaConfig`].
//!
//! Order of precedence, last wins: `kafka.properties`, then the role's own table
//! (`consumer_properties` / `producer_properties`), then the settings cluetrain manages itself
//! (validation already refused user values for those, see `model::config`).

use model::config::KafkaConfig;
use rdkafka::ClientConfig;

/// Which client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The input consumer.
    Consumer,
    /// Producers (dead letters, outputs).
    Producer,
}

impl Role {
    /// `consumer` or `producer`, as in config key names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Producer => "producer",
        }
    }
}

/// The client configuration for `role`, with every user property applied.
pub fn client_config(kafka: &KafkaConfig, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    c.set("client.id", format!("cluetrain-{}", role.as_str()));
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    let own = match role {
        Role::Consumer => &kafka.consumer_properties,
        Role::Producer => &kafka.producer_properties,
    };
    for (k, v) in own {
        c.set(k, v);
    }
    match role {
        Role::Consumer => {
            c.set("group.id", &kafka.group_id);
            c.set("auto.offset.reset", kafka.auto_offset_reset.as_str());
            // The pipeline stores offsets after results are durable and commits them itself.
            c.set("enable.auto.offset.store", "false");
            c.set("enable.auto.commit", "false");
            c.set("fetch.min.bytes", kafka.fetch_min_bytes.to_string());
            c.set(
                "fetch.wait.max.ms",
                kafka.fetch_wait_max.as_millis().to_string(),
            );
            c.set(
                "max.partition.fetch.bytes",
                kafka.partition_fetch_bytes_max.to_string(),
            );
            // Whole KiB, rounded up (validation keeps it within librdkafka's range).
            c.set(
                "queued.max.messages.kbytes",
                kafka.prefetch_bytes_max.div_ceil(1024).to_string(),
            );
            c.set(
                "queued.min.messages",
                kafka.prefetch_messages_max.to_string(),
            );
            c.set(
                "fetch.queue.backoff.ms",
                kafka.prefetch_backoff.as_millis().to_string(),
            );
            // Consumer lag per partition comes from librdkafka's statistics.
            if !kafka.properties.contains_key("statistics.interval.ms")
                && !kafka
                    .consumer_properties
                    .contains_key("statistics.interval.ms")
            {
                c.set("statistics.interval.ms", "5000");
            }
        }
        Role::Producer => {
            // Dead letters and outputs must not be lost on a leader change.
            if !own.contains_key("acks") && !kafka.properties.contains_key("acks") {
                c.set("acks", "all");
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_settings_win_and_user_properties_pass_through() {
        let mut k = KafkaConfig::default();
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        k.properties
            .insert("socket.timeout.ms".into(), "1000".into());
        k.consumer_properties
            .insert("socket.timeout.ms".into(), "2000".into());
        let c = client_config(&k, Role::Consumer);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(
            c.get("socket.timeout.ms"),
            Some("2000"),
            "role table overrides shared table"
        );
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(c.get("queued.min.messages"), Some("20000"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        let p = client_config(&k, Role::Producer);
        assert_eq!(p.get("socket.timeout.ms"), Some("1000"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("group.id"), None);
    }
}

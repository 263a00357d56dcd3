//! How cara's consumers join their consumer groups: the settings every group member
//! shares (the source's consumer and the executor's), chosen for recovery.
//!
//! A member killed with -9 never leaves its group: the group keeps it, and holds a
//! rebalance for it, until its session times out. librdkafka's default session
//! (45 s) made every restart after a crash wait that long before consuming again,
//! and a run of restarts wait for each killed member in turn. cara's members use a
//! 10 s session instead (Kafka's own default before 3.0): a restarted process
//! consumes again within about that, and a process that dies for good has its
//! partitions taken over by the others in the same bound. Heartbeats stay at
//! librdkafka's 3 s, sent by its background thread whatever the process is doing.
//! A user's `kafka.client_properties` still override both.

use rdkafka::config::ClientConfig;

/// The session of a group member, ms: how long the group waits for one that stopped
/// heartbeating before handing its partitions to the others.
pub const SESSION_TIMEOUT_MS: u32 = 10_000;

/// `client` (bootstrap servers and the user's properties) as a member of `group_id`.
pub fn member_config(client: &ClientConfig, group_id: &str) -> ClientConfig {
    let mut config = client.clone();
    config.set("group.id", group_id);
    if client.get("session.timeout.ms").is_none() {
        config.set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string());
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_get_a_short_session_unless_the_user_chose_one() {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", "127.0.0.1:9092");
        let member = member_config(&client, "cara");
        assert_eq!(member.get("group.id"), Some("cara"));
        assert_eq!(member.get("session.timeout.ms"), Some("10000"));
        assert_eq!(member.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        client.set("session.timeout.ms", "30000");
        let chosen = member_config(&client, "cara-executor");
        assert_eq!(chosen.get("session.timeout.ms"), Some("30000"));
        assert_eq!(chosen.get("group.id"), Some("cara-executor"));
    }
}

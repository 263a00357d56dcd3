//! The librdkafka properties every Kafka client cara creates shares (the consumer,
//! every producer, the admin client, `cara gen`): the bootstrap servers, the file's
//! `kafka.client_properties`, and `kafka.client_properties_env`, properties whose
//! values are read from environment variables when a client is made, so secrets
//! (`sasl.password`, a key's passphrase) stay out of the file and out of the copy of
//! the config a run records in its archive (`_cara/config.toml`).

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use super::{invalid, ConfigError};

/// Checks the names of `from_env` (property -> environment variable): both must be
/// usable, and a property may not be given both ways. Whether the variables are set
/// is checked when a client is made (a config may be checked where they are not).
pub fn validate(
    properties: &BTreeMap<String, String>,
    from_env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (property, variable) in from_env {
        let key = format!("kafka.client_properties_env.\"{property}\"");
        if property.trim().is_empty() {
            return Err(invalid(&key, "the property name must not be empty"));
        }
        if variable.is_empty() || variable.contains('=') || variable.contains('\0') {
            return Err(invalid(
                &key,
                format!("`{variable}` is not an environment variable name"),
            ));
        }
        if properties.contains_key(property) {
            return Err(invalid(
                &key,
                "also set in kafka.client_properties: give it one way",
            ));
        }
    }
    Ok(())
}

/// The properties of a client of `brokers`: the file's, then those from the
/// environment (`lookup` reads a variable; `std::env::var` in the binary). An unset
/// variable is an error naming the property and the variable.
pub fn client_config(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    from_env: &BTreeMap<String, String>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConfigError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (key, value) in properties {
        client.set(key, value);
    }
    for (property, variable) in from_env {
        let value = lookup(variable).ok_or_else(|| {
            invalid(
                &format!("kafka.client_properties_env.\"{property}\""),
                format!(
                    "environment variable {variable} is not set: export it, or remove the entry"
                ),
            )
        })?;
        client.set(property, value);
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
        let file = map(&[("security.protocol", "SASL_SSL")]);
        let env = map(&[("sasl.password", "KAFKA_PASSWORD")]);
        let lookup = |name: &str| (name == "KAFKA_PASSWORD").then(|| "s3cret".to_owned());
        let client = client_config("b:9092", &file, &env, lookup).unwrap();
        assert_eq!(client.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.password"), Some("s3cret"));

        let error = client_config("b:9092", &file, &env, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kafka.client_properties_env.\"sasl.password\"")
                && error.contains("KAFKA_PASSWORD is not set"),
            "{error}"
        );
    }

    #[test]
    fn names_are_checked_and_a_property_is_given_one_way() {
        let file = map(&[("sasl.password", "plain")]);
        // (properties from the environment, what the error names, or None if valid)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: [Case; 5] = [
            (&[("sasl.username", "KAFKA_USER")], None),
            (&[("sasl.password", "KAFKA_PASSWORD")], Some("one way")),
            (&[(" ", "X")], Some("must not be empty")),
            (
                &[("ssl.key.password", "")],
                Some("not an environment variable"),
            ),
            (
                &[("ssl.key.password", "A=B")],
                Some("not an environment variable"),
            ),
        ];
        for (env, expected) in cases {
            let outcome = validate(&file, &map(env)).map_err(|e| e.to_string());
            match expected {
                None => assert!(outcome.is_ok(), "{env:?}: {outcome:?}"),
                Some(reason) => {
                    let error = outcome.expect_err("refused");
                    assert!(
                        error.contains("kafka.client_properties_env") && error.contains(reason),
                        "{env:?}: {error}"
                    );
                }
            }
        }
    }
}

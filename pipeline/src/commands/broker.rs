//! `cara broker`: only the embedded Kafka-protocol broker, until SIGTERM.

use cara_pipeline::broker::{EmbeddedBroker, TopicPlan, OUTPUT_TOPICS};
use cara_pipeline::config::Config;

use super::BrokerArgs;

/// The topics the embedded broker creates for `config`.
pub fn topic_plan(config: &Config) -> TopicPlan {
    let k = &config.kafka;
    let b = &config.embedded_broker;
    let mut topics: Vec<(String, i32)> = [&k.metrics_topic, &k.logs_topic, &k.spans_topic]
        .into_iter()
        .map(|t| (t.clone(), b.telemetry_partitions))
        .collect();
    for t in OUTPUT_TOPICS {
        let name = match *t {
            "cara.dlq" => k.dlq_topic.clone(),
            "cara.alerts" => k.alerts_topic.clone(),
            "cara.slo" => k.slo_topic.clone(),
            "cara.internal.slo" => k.slo_exchange_topic.clone(),
            "cara.internal.traces" => k.trace_exchange_topic.clone(),
            other => other.to_owned(),
        };
        // Every span partition's trace cells meet in one combiner.
        let partitions = if *t == "cara.internal.traces" {
            1
        } else {
            b.output_partitions
        };
        topics.push((name, partitions));
    }
    TopicPlan { topics }
}

/// Starts the broker and waits for SIGTERM.
pub fn main(args: BrokerArgs) -> anyhow::Result<()> {
    let config = super::load_config(args.config.as_deref())?;
    let listen = args.listen.unwrap_or(config.embedded_broker.listen);
    let plan = topic_plan(&config);
    super::runtime()?.block_on(async {
        let broker = EmbeddedBroker::start(listen, plan.clone()).await?;
        println!(
            "cara broker: Kafka bootstrap {} (mock broker at {})",
            broker.listen, broker.direct_bootstrap
        );
        println!("{}", EmbeddedBroker::limits_notice(&plan));
        for (topic, partitions) in &plan.topics {
            println!("  topic {topic}: {partitions} partitions");
        }
        super::termination().await;
        println!("cara broker: stopping");
        drop(broker);
        Ok(())
    })
}

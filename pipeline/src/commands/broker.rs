//! `cara broker`: only the embedded Kafka-protocol broker, until SIGTERM.

use cara_pipeline::broker::{Advertised, EmbeddedBroker, TopicPlan};
use cara_pipeline::dataflow::Dataflow;

use super::BrokerArgs;

/// Starts the broker and waits for SIGTERM.
pub fn main(args: BrokerArgs) -> anyhow::Result<()> {
    let config = super::load_config(args.config.as_deref())?;
    let listen = args.listen.unwrap_or(config.embedded_broker.listen);
    let plan = TopicPlan::of(&Dataflow::declare(&config)?.topics);
    super::runtime()?.block_on(async {
        let broker = EmbeddedBroker::start(listen, plan.clone(), Advertised::Listen).await?;
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

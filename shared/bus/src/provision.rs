//! The last step of setting up a broker (after `oms_topology::provision`'s identities and server
//! config): as the provisioner, create or update every stream, bucket and durable consumer.

use std::time::Duration;

use oms_config::Config;
use oms_topology::identity::Identity;
use oms_topology::{self as topology, TopologyError};
use tracing::{info, warn};

use crate::BusError;

#[derive(Debug, thiserror::Error)]
pub enum TopologyNotReady {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the topology is not in place after {waited:?}: {last}")]
    Topology {
        waited: Duration,
        last: TopologyError,
    },
}

/// Creates or updates every stream, bucket and durable consumer, as the provisioner; retries
/// while the server is not up yet, for at most `wait`.
pub async fn topology(config: &Config, wait: Duration) -> Result<(), TopologyNotReady> {
    let client = crate::connect(config, Identity::Provisioner).await?;
    let js = crate::jetstream(client.clone(), &config.nats);
    let started = tokio::time::Instant::now();
    let mut pauses = crate::backoff(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match ensure_all(&js, config).await {
            Ok(()) => break,
            Err(last) if started.elapsed() >= wait => {
                return Err(TopologyNotReady::Topology {
                    waited: started.elapsed(),
                    last,
                });
            }
            Err(e) => warn!(error = %e, "topology not in place yet, retrying"),
        }
        tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(2))).await;
    }
    // Everything asked is answered; nothing is left unsent before the client goes.
    let _ = client.flush().await;
    info!("topology in place");
    Ok(())
}

async fn ensure_all(
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> Result<(), TopologyError> {
    topology::ensure(js, &config.streams).await?;
    for spec in topology::CONSUMERS {
        topology::ensure_consumer(js, &spec, &config.consumers).await?;
    }
    Ok(())
}

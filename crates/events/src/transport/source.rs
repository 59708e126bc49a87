//! [`EventSource`]: a provisioned subscription, ready to run a handler over its
//! deliveries on whichever transport made it.

use std::future::Future;

use tower::Service;

use super::TransportError;
use crate::consumer::{ConsumerReport, Delivery, HandlerError};

/// A subscription provisioned by [`Transport::subscribe`](super::Transport::subscribe):
/// one or more consumer parts (one per topic on the embedded bus, one queue on SQS) that
/// [`run`](Self::run) drives together.
#[derive(Debug, Clone)]
pub struct EventSource {
    consumer: String,
    pub(super) parts: Vec<Part>,
}

/// One consumer runtime's part of a source.
#[derive(Debug, Clone)]
pub(super) enum Part {
    /// A subscription of the embedded bus.
    #[cfg(feature = "sqlite")]
    Bus {
        bus: crate::bus::EmbeddedBus,
        config: crate::bus::BusConsumerConfig,
    },
    /// An SQS queue.
    #[cfg(feature = "sqs")]
    Sqs {
        client: aws_sdk_sqs::Client,
        config: Box<crate::consumer::sqs::SqsConsumerConfig>,
    },
}

impl Part {
    pub(super) fn name(&self) -> &str {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Bus { config, .. } => &config.subscription,
            #[cfg(feature = "sqs")]
            Self::Sqs { config, .. } => config.queue_name(),
        }
    }

    async fn run<H>(
        self,
        handler: H,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ConsumerReport, TransportError>
    where
        H: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        H::Future: Send + 'static,
    {
        let consumer = self.name().to_owned();
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| TransportError::Consumer {
            consumer,
            source,
        };
        match self {
            #[cfg(feature = "sqlite")]
            Self::Bus { bus, config } => crate::bus::BusConsumer::new(bus, config)
                .run(handler, stopped)
                .await
                .map_err(|error| failed(Box::new(error))),
            #[cfg(feature = "sqs")]
            Self::Sqs { client, config } => {
                // The SQS runtime's future is large (SDK request state): on the heap.
                Box::pin(
                    crate::consumer::sqs::SqsConsumer::new(client, *config).run(handler, stopped),
                )
                .await
                .map_err(|error| failed(Box::new(error)))
            }
        }
    }
}

impl EventSource {
    pub(super) fn new(consumer: String, parts: Vec<Part>) -> Self {
        Self { consumer, parts }
    }

    /// The consumer's name, for logs.
    pub fn name(&self) -> &str {
        &self.consumer
    }

    /// The names of its parts: bus subscriptions or SQS queues.
    pub fn parts(&self) -> Vec<&str> {
        self.parts.iter().map(Part::name).collect()
    }

    /// The configurations of its SQS consumers (queue and dead-letter queue URLs,
    /// visibility, wait), one per queue.
    #[cfg(feature = "sqs")]
    pub fn sqs_consumers(&self) -> Vec<&crate::consumer::sqs::SqsConsumerConfig> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Sqs { config, .. } => Some(config.as_ref()),
                #[cfg(feature = "sqlite")]
                Part::Bus { .. } => None,
            })
            .collect()
    }

    /// Runs `handler` over every part's deliveries until `shutdown` completes, then
    /// drains each part, and answers their reports added up. Meanwhile (feature
    /// `metrics`) it samples the parts' dead letters every
    /// [`DEAD_LETTER_SAMPLE_EVERY`](super::DEAD_LETTER_SAMPLE_EVERY) into the
    /// `dovetail_consumer_dead_letters{queue}` gauge.
    ///
    /// # Errors
    /// [`TransportError::Consumer`] when a part cannot consume (its subscription or queue
    /// does not exist or cannot be reached); the other parts are stopped and drained
    /// first.
    pub async fn run<H>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ConsumerReport, TransportError>
    where
        H: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        H::Future: Send + 'static,
    {
        #[cfg(feature = "metrics")]
        let sampler = tokio::spawn(super::dead_letters::sample_dead_letters(
            self.clone(),
            super::DEAD_LETTER_SAMPLE_EVERY,
        ));
        let name = self.consumer;
        let report = match <[Part; 1]>::try_from(self.parts) {
            Ok([only]) => only.run(handler, shutdown).await,
            Err(parts) => run_parts(parts, handler, shutdown).await,
        };
        #[cfg(feature = "metrics")]
        sampler.abort();
        let report = report?;
        tracing::info!(consumer = %name, ?report, "consumer stopped");
        Ok(report)
    }
}

/// Runs several parts at once, each on its own task; the first to fail stops the others.
async fn run_parts<H>(
    parts: Vec<Part>,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ConsumerReport, TransportError>
where
    H: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    H::Future: Send + 'static,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = std::sync::Arc::new(stop);
    let mut tasks = tokio::task::JoinSet::new();
    for part in parts {
        let mut stopped = stopped.clone();
        let handler = handler.clone();
        tasks.spawn(part.run(handler, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    let signal = std::sync::Arc::clone(&stop);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = signal.send(true);
    });
    let mut total = ConsumerReport::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|error| TransportError::Consumer {
            consumer: "a consumer part".to_owned(),
            source: Box::new(error),
        });
        match result.and_then(|report| report) {
            Ok(report) => add(&mut total, &report),
            Err(error) => {
                let _ = stop.send(true);
                first_error.get_or_insert(error);
            }
        }
    }
    watcher.abort();
    first_error.map_or(Ok(total), Err)
}

fn add(total: &mut ConsumerReport, report: &ConsumerReport) {
    total.received += report.received;
    total.handled += report.handled;
    total.retried += report.retried;
    total.dead_lettered += report.dead_lettered;
    total.failed += report.failed;
    total.released += report.released;
    total.abandoned += report.abandoned;
    total.delete_failures += report.delete_failures;
    total.visibility_extensions += report.visibility_extensions;
}

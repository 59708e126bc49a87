//! AWS clients from the environment, and the idempotent provisioning of a service's
//! events transport on SNS and SQS: topics, consumer queues with their dead-letter
//! queues, subscriptions with filter policies, and the queue policies they need.
//!
//! [`AwsClients::from_env`] reads the standard variables, so the same binary talks to
//! real AWS or to a local emulator:
//!
//! | variable | used for |
//! |---|---|
//! | `AWS_REGION`, else `AWS_DEFAULT_REGION` | the region (required) |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static credentials (the first two required) |
//! | `AWS_ENDPOINT_URL_DYNAMODB`, `_DYNAMODB_STREAMS`, `_SNS`, `_SQS` | one service's endpoint |
//! | `AWS_ENDPOINT_URL` | every other service's endpoint; unset: real AWS |
//! | `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` | ignore the endpoint variables |
//!
//! **Limit:** the clients are built without `aws-config` (it brings the SSO and STS
//! crates into every build), so credentials come only from those variables: shared
//! profiles (`~/.aws`), SSO, web identity, ECS task roles and EC2 instance profiles are
//! not read. On AWS compute, export the role's temporary credentials into the variables
//! (including `AWS_SESSION_TOKEN`) or run the service where they are set.
//!
//! Provisioning is safe to run on every start, from several processes at once:
//! [`AwsClients::publisher`] creates the topic (`CreateTopic` answers the existing topic),
//! and [`AwsClients::consumer_source`] brings a consumer's queue, dead-letter queue,
//! redrive policy, queue policy and subscriptions to the state its [`ConsumerQueue`]
//! describes, changing only what differs.

use std::collections::HashMap;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::{RetryConfig, TimeoutConfig};
use dovetail_events::consumer::sqs::SqsConsumerConfig;
use dovetail_events::publish::{SnsPublisher, SnsPublisherConfig};

use crate::events::{EventSource, EventsPublisher};

/// The longest queue name SQS accepts.
const MAX_QUEUE_NAME: usize = 80;
/// How long a dead-letter queue keeps messages: SQS's maximum, 14 days.
const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why the AWS clients cannot be configured from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AwsConfigError {
    /// Neither `AWS_REGION` nor `AWS_DEFAULT_REGION` is set.
    ///
    /// ### Handling
    /// Set `AWS_REGION` (any region, such as `us-east-1`, for a local emulator).
    #[error(
        "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), e.g. AWS_REGION=us-east-1; \
         a local emulator accepts any region"
    )]
    MissingRegion,
    /// `AWS_ACCESS_KEY_ID` or `AWS_SECRET_ACCESS_KEY` is not set.
    ///
    /// ### Handling
    /// Set both (`test`/`test` for a local emulator). Credentials are read only from these
    /// variables: see the [module documentation](self).
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
         AWS_SESSION_TOKEN for temporary credentials; `test`/`test` for a local emulator). \
         Missing: {missing}. This build reads credentials only from these variables, not \
         from ~/.aws profiles, SSO or instance roles"
    )]
    MissingCredentials {
        /// The variables that are not set.
        missing: String,
    },
    /// An endpoint variable is not an `http://` or `https://` URL.
    ///
    /// ### Handling
    /// Fix the variable, e.g. `AWS_ENDPOINT_URL=http://127.0.0.1:4566`.
    #[error("{variable}={value:?} is not an http:// or https:// URL; fix or unset it")]
    InvalidEndpoint {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
    },
}

/// Where each AWS service's requests go: `None` for real AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEndpoints {
    /// DynamoDB's endpoint.
    pub dynamodb: Option<String>,
    /// DynamoDB Streams' endpoint.
    pub dynamodb_streams: Option<String>,
    /// SNS's endpoint.
    pub sns: Option<String>,
    /// SQS's endpoint.
    pub sqs: Option<String>,
}

impl std::fmt::Display for AwsEndpoints {
    /// One line for logs and banners, such as `DynamoDB, DynamoDB Streams, SNS and SQS at
    /// http://127.0.0.1:4566` or `DynamoDB at real AWS, SQS at http://127.0.0.1:9324, ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services = [
            ("DynamoDB", &self.dynamodb),
            ("DynamoDB Streams", &self.dynamodb_streams),
            ("SNS", &self.sns),
            ("SQS", &self.sqs),
        ];
        let first = services[0].1;
        if services.iter().all(|(_, endpoint)| *endpoint == first) {
            return match first {
                Some(endpoint) => {
                    write!(f, "DynamoDB, DynamoDB Streams, SNS and SQS at {endpoint}")
                }
                None => f.write_str("DynamoDB, DynamoDB Streams, SNS and SQS at real AWS"),
            };
        }
        let parts: Vec<String> = services
            .iter()
            .map(|(name, endpoint)| {
                format!("{name} at {}", endpoint.as_deref().unwrap_or("real AWS"))
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Clients for DynamoDB, DynamoDB Streams, SNS and SQS, configured from the environment
/// (see the [module documentation](self)); cheap to clone.
///
/// # Example
/// ```no_run
/// use dovetail_service_kit::aws::{AwsClients, ConsumerQueue, TypeFilter};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let aws = AwsClients::from_env()?;
/// let publisher = aws.publisher("policy-events").await?;
/// let source = aws
///     .consumer_source(&ConsumerQueue::new("claim-policy-replica").subscribe("policy-events", TypeFilter::All))
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AwsClients {
    region: String,
    endpoints: AwsEndpoints,
    dynamodb: aws_sdk_dynamodb::Client,
    dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Clients configured from the process's environment variables.
    ///
    /// # Errors
    /// See [`AwsConfigError`]: a missing region or credentials, or an endpoint that is
    /// not a URL.
    pub fn from_env() -> Result<Self, AwsConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Clients configured from the variables `lookup` answers (for tests, or for
    /// settings kept elsewhere than the environment).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AwsConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(AwsConfigError::MissingRegion)?;
        let key_id = get("AWS_ACCESS_KEY_ID");
        let secret = get("AWS_SECRET_ACCESS_KEY");
        let (Some(key_id), Some(secret)) = (key_id.clone(), secret.clone()) else {
            let missing = [
                ("AWS_ACCESS_KEY_ID", key_id),
                ("AWS_SECRET_ACCESS_KEY", secret),
            ]
            .into_iter()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
            .join(", ");
            return Err(AwsConfigError::MissingCredentials { missing });
        };
        let credentials = Credentials::new(
            key_id,
            secret,
            get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoints = endpoints_from(&get)?;
        let sdk = SdkConfig::builder()
            .region(Region::new(region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .retry_config(RetryConfig::standard())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            )
            .build();
        let dynamodb = {
            let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
            config.set_endpoint_url(endpoints.dynamodb.clone());
            aws_sdk_dynamodb::Client::from_conf(config.build())
        };
        let dynamodb_streams = {
            let mut config = aws_sdk_dynamodbstreams::config::Builder::from(&sdk);
            config.set_endpoint_url(endpoints.dynamodb_streams.clone());
            aws_sdk_dynamodbstreams::Client::from_conf(config.build())
        };
        let sns = {
            let mut config = aws_sdk_sns::config::Builder::from(&sdk);
            config.set_endpoint_url(endpoints.sns.clone());
            aws_sdk_sns::Client::from_conf(config.build())
        };
        let sqs = {
            let mut config = aws_sdk_sqs::config::Builder::from(&sdk);
            config.set_endpoint_url(endpoints.sqs.clone());
            aws_sdk_sqs::Client::from_conf(config.build())
        };
        Ok(Self {
            region,
            endpoints,
            dynamodb,
            dynamodb_streams,
            sns,
            sqs,
        })
    }

    /// The region the clients use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where each service's requests go; its `Display` is one line for logs.
    pub fn endpoints(&self) -> &AwsEndpoints {
        &self.endpoints
    }

    /// The DynamoDB client.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// The DynamoDB Streams client.
    pub fn dynamodb_streams(&self) -> &aws_sdk_dynamodbstreams::Client {
        &self.dynamodb_streams
    }

    /// The SNS client.
    pub fn sns(&self) -> &aws_sdk_sns::Client {
        &self.sns
    }

    /// The SQS client.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// The ARN of the SNS topic `topic`, creating it when missing (a name ending in
    /// `.fifo` makes a FIFO topic). `CreateTopic` answers an existing topic's ARN, so this
    /// is safe to call on every start.
    ///
    /// # Errors
    /// When SNS refuses: the message names the topic and SNS's reason.
    pub async fn ensure_topic(&self, topic: &str) -> Result<String, String> {
        let mut request = self.sns.create_topic().name(topic);
        if topic.ends_with(".fifo") {
            request = request.attributes("FifoTopic", "true");
        }
        let created = request
            .send()
            .await
            .map_err(|error| format!("creating the SNS topic {topic}: {}", chain(&error)))?;
        created
            .topic_arn()
            .map(str::to_owned)
            .ok_or_else(|| format!("creating the SNS topic {topic}: SNS answered no topic ARN"))
    }

    /// The publisher to the SNS topic `topic`, creating the topic when missing.
    ///
    /// # Errors
    /// When the topic cannot be created; the message says why.
    pub async fn publisher(&self, topic: &str) -> Result<EventsPublisher, String> {
        let topic_arn = self.ensure_topic(topic).await?;
        Ok(EventsPublisher::Sns(SnsPublisher::new(
            self.sns.clone(),
            SnsPublisherConfig { topic_arn },
        )))
    }

    /// The source of a consumer reading the events of `topic` whose type starts with one
    /// of `type_prefixes` (all of them when it is empty) from the queue `queue`, with the
    /// defaults of [`ConsumerQueue`]; see [`consumer_source`](Self::consumer_source).
    ///
    /// # Errors
    /// As [`consumer_source`](Self::consumer_source).
    pub async fn subscribed_queue(
        &self,
        topic: &str,
        queue: &str,
        type_prefixes: &[&str],
    ) -> Result<EventSource, String> {
        let filter = if type_prefixes.is_empty() {
            TypeFilter::All
        } else {
            TypeFilter::Prefixes(
                type_prefixes
                    .iter()
                    .map(|&prefix| prefix.to_owned())
                    .collect(),
            )
        };
        self.consumer_source(&ConsumerQueue::new(queue).subscribe(topic, filter))
            .await
    }

    /// Brings a consumer's queue to the state `spec` describes, and returns the source a
    /// consumer reads it from:
    /// - the queue and its dead-letter queue (`<queue>-dlq`, FIFO when the queue is),
    ///   created when missing; the dead-letter queue keeps messages 14 days;
    /// - the queue's redrive policy: a message received `max_receive_count` times moves
    ///   to the dead-letter queue;
    /// - the queue's policy, allowing each subscribed topic to send to it, and its
    ///   visibility timeout;
    /// - one subscription per topic (created when missing, with the topic), with raw
    ///   message delivery and the filter policy on the `type` message attribute when
    ///   event types are given (no filter policy otherwise).
    ///
    /// The source's consumer uses the spec's wait time and visibility timeout, with its
    /// dead-letter queue for rejected messages. Only what differs is changed, so running
    /// it again changes nothing. On AWS, a new or
    /// changed filter policy may take up to 15 minutes to apply everywhere (SNS is
    /// eventually consistent); emulators apply it at once.
    ///
    /// # Errors
    /// When a name is invalid or SQS or SNS refuses; the message names the resource and
    /// the reason.
    pub async fn consumer_source(&self, spec: &ConsumerQueue) -> Result<EventSource, String> {
        let names = QueueNames::of(&spec.queue)?;
        let dead_letter = self.ensure_queue(&names.dead_letter, names.fifo).await?;
        let queue = self.ensure_queue(&names.queue, names.fifo).await?;
        let mut topics = Vec::with_capacity(spec.subscriptions.len());
        for subscription in &spec.subscriptions {
            topics.push(self.ensure_topic(&subscription.topic).await?);
        }

        let mut wanted = HashMap::from([
            (
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({
                    "deadLetterTargetArn": dead_letter.arn,
                    "maxReceiveCount": spec.max_receive_count.max(1),
                })
                .to_string(),
            ),
            (
                QueueAttributeName::Policy,
                queue_policy(&queue.arn, &topics).to_string(),
            ),
        ]);
        let visibility = spec.visibility_timeout.max(Duration::from_secs(3));
        wanted.insert(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        );
        self.set_queue_attributes(&queue, wanted).await?;
        self.set_queue_attributes(
            &dead_letter,
            HashMap::from([(
                QueueAttributeName::MessageRetentionPeriod,
                DEAD_LETTER_RETENTION.as_secs().to_string(),
            )]),
        )
        .await?;

        for (subscription, topic_arn) in spec.subscriptions.iter().zip(&topics) {
            self.ensure_subscription(topic_arn, &queue, subscription)
                .await?;
        }

        let mut config = SqsConsumerConfig::new(queue.url);
        config.dead_letter_queue_url = Some(dead_letter.url);
        config.wait_time = spec.wait_time;
        config.visibility_timeout = visibility;
        config.heartbeat_every = visibility / 3;
        Ok(EventSource::Sqs {
            client: self.sqs.clone(),
            config: Box::new(config),
        })
    }

    /// The queue `name`, created when missing.
    async fn ensure_queue(&self, name: &str, fifo: bool) -> Result<QueueRef, String> {
        // Only the attribute that cannot change is given here: CreateQueue on an existing
        // queue with other attributes fails, so the others are set afterwards.
        let mut request = self.sqs.create_queue().queue_name(name);
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let created = request
            .send()
            .await
            .map_err(|error| format!("creating the SQS queue {name}: {}", chain(&error)))?;
        let url = created
            .queue_url()
            .ok_or_else(|| format!("creating the SQS queue {name}: SQS answered no queue URL"))?
            .to_owned();
        let attributes = self.queue_attributes(&url).await?;
        let arn = attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| format!("reading the SQS queue {name}: SQS answered no QueueArn"))?;
        Ok(QueueRef {
            url,
            arn,
            attributes,
        })
    }

    async fn queue_attributes(
        &self,
        url: &str,
    ) -> Result<HashMap<QueueAttributeName, String>, String> {
        let read = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|error| {
                format!(
                    "reading the attributes of the SQS queue {url}: {}",
                    chain(&error)
                )
            })?;
        Ok(read.attributes().cloned().unwrap_or_default())
    }

    /// Sets the attributes of `wanted` that the queue does not have already.
    async fn set_queue_attributes(
        &self,
        queue: &QueueRef,
        wanted: HashMap<QueueAttributeName, String>,
    ) -> Result<(), String> {
        let changes: HashMap<QueueAttributeName, String> = wanted
            .into_iter()
            .filter(|(name, value)| !same_attribute(name, queue.attributes.get(name), value))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let names = changes
            .keys()
            .map(QueueAttributeName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.sqs
            .set_queue_attributes()
            .queue_url(&queue.url)
            .set_attributes(Some(changes))
            .send()
            .await
            .map_err(|error| {
                format!(
                    "setting {names} of the SQS queue {}: {}",
                    queue.url,
                    chain(&error)
                )
            })?;
        Ok(())
    }

    /// The queue's subscription to the topic: found (and its attributes corrected) or
    /// created. Subscribing again with other attributes fails on SNS, so existing
    /// subscriptions are looked up first.
    async fn ensure_subscription(
        &self,
        topic_arn: &str,
        queue: &QueueRef,
        spec: &TopicSubscription,
    ) -> Result<(), String> {
        let filter = spec.filter_policy();
        let failed = |what: &str, error: &dyn std::error::Error| {
            format!(
                "{what} the subscription of {} to {topic_arn}: {}",
                queue.arn,
                chain(error)
            )
        };
        let Some(subscription_arn) = self.find_subscription(topic_arn, &queue.arn).await? else {
            let mut request = self
                .sns
                .subscribe()
                .topic_arn(topic_arn)
                .protocol("sqs")
                .endpoint(&queue.arn)
                .return_subscription_arn(true)
                .attributes("RawMessageDelivery", "true");
            if let Some(filter) = &filter {
                request = request.attributes("FilterPolicy", filter.to_string());
            }
            request
                .send()
                .await
                .map_err(|error| failed("creating", &error))?;
            return Ok(());
        };
        let current = self
            .sns
            .get_subscription_attributes()
            .subscription_arn(&subscription_arn)
            .send()
            .await
            .map_err(|error| failed("reading", &error))?;
        let current = current.attributes().cloned().unwrap_or_default();
        let mut changes = Vec::new();
        if current.get("RawMessageDelivery").map(String::as_str) != Some("true") {
            changes.push(("RawMessageDelivery", "true".to_owned()));
        }
        let current_filter = current
            .get("FilterPolicy")
            .filter(|text| !text.trim().is_empty())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter(|policy| policy.as_object().is_none_or(|fields| !fields.is_empty()));
        if current_filter != filter {
            // An empty policy removes the filter.
            let text = filter.map_or_else(|| "{}".to_owned(), |policy| policy.to_string());
            changes.push(("FilterPolicy", text));
        }
        for (name, value) in changes {
            self.sns
                .set_subscription_attributes()
                .subscription_arn(&subscription_arn)
                .attribute_name(name)
                .attribute_value(value)
                .send()
                .await
                .map_err(|error| failed(&format!("setting {name} of"), &error))?;
        }
        Ok(())
    }

    /// The ARN of the topic's subscription delivering to `queue_arn`, if there is one.
    async fn find_subscription(
        &self,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, String> {
        let mut next_token = None;
        loop {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|error| {
                    format!(
                        "listing the subscriptions of {topic_arn}: {}",
                        chain(&error)
                    )
                })?;
            let found = page.subscriptions().iter().find(|subscription| {
                subscription.protocol() == Some("sqs") && subscription.endpoint() == Some(queue_arn)
            });
            if let Some(arn) = found.and_then(|subscription| subscription.subscription_arn()) {
                // An unconfirmed subscription has no ARN to set attributes on; SQS
                // subscriptions in the same account are confirmed at once.
                if arn.starts_with("arn:") {
                    return Ok(Some(arn.to_owned()));
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(None),
            }
        }
    }
}

/// A consumer's queue and what it subscribes to; see [`AwsClients::consumer_source`].
///
/// ```
/// use std::time::Duration;
/// use dovetail_service_kit::aws::{ConsumerQueue, TypeFilter};
///
/// let mut spec = ConsumerQueue::new("claim-policy-replica")
///     .subscribe("policy-events", TypeFilter::Types(vec!["policy.issued".into(), "policy.cancelled".into()]))
///     .subscribe("claim-events", TypeFilter::Prefixes(vec!["claim.".into()]));
/// spec.max_receive_count = 10;
/// spec.visibility_timeout = Duration::from_secs(60);
/// assert_eq!(spec.subscriptions.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerQueue {
    /// The queue's name (ending in `.fifo` for a FIFO queue, subscribed to FIFO topics).
    pub queue: String,
    /// The topics it receives from.
    pub subscriptions: Vec<TopicSubscription>,
    /// After how many receives a message moves to the dead-letter queue (default 5; 0
    /// counts as 1).
    pub max_receive_count: u32,
    /// How long a received message stays invisible to other receives (default 30 seconds,
    /// at least 3): the queue's setting and the consumer's, which extends it every third of
    /// it while the handler runs. It is also how long the messages a killed consumer held
    /// wait before they are delivered again.
    pub visibility_timeout: Duration,
    /// How long each of the consumer's receives waits for messages (default 2 seconds).
    /// A message is delivered as soon as it arrives whatever the wait; a stopping consumer
    /// waits for its receive in flight, so a short wait stops sooner, and costs more
    /// requests when idle (about 1.3 million a month per consumer at 2 seconds).
    pub wait_time: Duration,
}

impl ConsumerQueue {
    /// The queue `queue`, subscribed to nothing yet, with the defaults.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            subscriptions: Vec::new(),
            max_receive_count: 5,
            visibility_timeout: Duration::from_secs(30),
            wait_time: Duration::from_secs(2),
        }
    }

    /// The same, also subscribed to the events of `topic` that `filter` lets through.
    #[must_use]
    pub fn subscribe(mut self, topic: impl Into<String>, filter: TypeFilter) -> Self {
        self.subscriptions.push(TopicSubscription {
            topic: topic.into(),
            filter,
        });
        self
    }
}

/// A queue's subscription to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSubscription {
    /// The topic's name (created when missing).
    pub topic: String,
    /// The events delivered.
    pub filter: TypeFilter,
}

/// Which events of a topic a subscription delivers, by their type: an SNS filter policy
/// on the `type` message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeFilter {
    /// Every event (no filter policy).
    All,
    /// The events of these types, such as `policy.issued`.
    Types(Vec<String>),
    /// The events whose type starts with one of these, such as `policy.`.
    Prefixes(Vec<String>),
}

impl TopicSubscription {
    /// The SNS filter policy, if the subscription filters.
    fn filter_policy(&self) -> Option<serde_json::Value> {
        let sorted = |values: &[String]| {
            let mut values = values.to_vec();
            values.sort();
            values.dedup();
            values
        };
        let matches: Vec<serde_json::Value> = match &self.filter {
            TypeFilter::All => return None,
            TypeFilter::Types(types) => sorted(types)
                .into_iter()
                .map(serde_json::Value::from)
                .collect(),
            TypeFilter::Prefixes(prefixes) => sorted(prefixes)
                .into_iter()
                .map(|prefix| serde_json::json!({ "prefix": prefix }))
                .collect(),
        };
        Some(
            serde_json::json!({ dovetail_events::envelope::MessageAttributes::EVENT_TYPE: matches }),
        )
    }
}

/// A queue's URL, ARN and attributes as read.
struct QueueRef {
    url: String,
    arn: String,
    attributes: HashMap<QueueAttributeName, String>,
}

/// A consumer queue's name and its dead-letter queue's.
struct QueueNames {
    queue: String,
    dead_letter: String,
    fifo: bool,
}

impl QueueNames {
    fn of(queue: &str) -> Result<Self, String> {
        let (stem, fifo) = match queue.strip_suffix(".fifo") {
            Some(stem) => (stem, true),
            None => (queue, false),
        };
        let dead_letter = format!("{stem}-dlq{}", if fifo { ".fifo" } else { "" });
        let valid = !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && dead_letter.len() <= MAX_QUEUE_NAME;
        if !valid {
            return Err(format!(
                "the queue name {queue:?} is not usable: SQS names are letters, digits, `-` and \
                 `_` (plus `.fifo` for a FIFO queue), and its dead-letter queue {dead_letter:?} \
                 must fit in {MAX_QUEUE_NAME} characters"
            ));
        }
        Ok(Self {
            queue: queue.to_owned(),
            dead_letter,
            fifo,
        })
    }
}

/// The endpoints from the variables `get` answers.
fn endpoints_from(get: &dyn Fn(&str) -> Option<String>) -> Result<AwsEndpoints, AwsConfigError> {
    if get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    {
        return Ok(AwsEndpoints::default());
    }
    let endpoint = |service: &str| -> Result<Option<String>, AwsConfigError> {
        let specific = format!("AWS_ENDPOINT_URL_{service}");
        let found = get(&specific).map(|value| (specific, value)).or_else(|| {
            get("AWS_ENDPOINT_URL").map(|value| ("AWS_ENDPOINT_URL".to_owned(), value))
        });
        match found {
            None => Ok(None),
            Some((_, value)) if value.starts_with("http://") || value.starts_with("https://") => {
                Ok(Some(value))
            }
            Some((variable, value)) => Err(AwsConfigError::InvalidEndpoint { variable, value }),
        }
    };
    Ok(AwsEndpoints {
        dynamodb: endpoint("DYNAMODB")?,
        dynamodb_streams: endpoint("DYNAMODB_STREAMS")?,
        sns: endpoint("SNS")?,
        sqs: endpoint("SQS")?,
    })
}

/// The queue policy letting `topics` send to the queue `queue_arn`.
fn queue_policy(queue_arn: &str, topics: &[String]) -> serde_json::Value {
    let mut topics = topics.to_vec();
    topics.sort();
    topics.dedup();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "dovetail-topics",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topics}},
        }],
    })
}

/// Whether the queue's attribute `current` already says `wanted` (JSON attributes
/// compared as JSON, since SQS may reformat them).
fn same_attribute(name: &QueueAttributeName, current: Option<&String>, wanted: &str) -> bool {
    let Some(current) = current else {
        return false;
    };
    match name {
        QueueAttributeName::Policy | QueueAttributeName::RedrivePolicy => {
            match (
                serde_json::from_str::<serde_json::Value>(current),
                serde_json::from_str::<serde_json::Value>(wanted),
            ) {
                (Ok(current), Ok(wanted)) => same_json(&current, &wanted),
                _ => current == wanted,
            }
        }
        _ => current == wanted,
    }
}

/// JSON equality that takes numbers written as strings (`"5"`, as SQS answers
/// `maxReceiveCount`) for the numbers they spell.
fn same_json(left: &serde_json::Value, right: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, value)| right.get(key).is_some_and(|other| same_json(value, other)))
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(a, b)| same_json(a, b))
        }
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => text == &number.to_string(),
        _ => left == right,
    }
}

/// An error with its whole chain of causes (the SDK's `Display` alone says only
/// "service error").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    const BASE: [(&str, &str); 3] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];

    #[test]
    fn a_missing_region_is_an_error_that_says_what_to_set() {
        let error = AwsClients::from_lookup(lookup(&BASE[1..])).unwrap_err();
        assert_eq!(error, AwsConfigError::MissingRegion);
        assert!(error.to_string().contains("AWS_REGION"));
    }

    #[test]
    fn the_default_region_variable_is_the_fallback() {
        let vars = [("AWS_DEFAULT_REGION", "eu-north-1"), BASE[1], BASE[2]];
        let clients = AwsClients::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(clients.region(), "eu-north-1");
    }

    #[test]
    fn missing_credentials_name_the_missing_variable() {
        let vars = [BASE[0], BASE[1]];
        let error = AwsClients::from_lookup(lookup(&vars)).unwrap_err();
        assert_eq!(
            error,
            AwsConfigError::MissingCredentials {
                missing: "AWS_SECRET_ACCESS_KEY".to_owned()
            }
        );
    }

    #[test]
    fn service_endpoints_override_the_shared_one() {
        let vars = [
            BASE[0],
            BASE[1],
            BASE[2],
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9324"),
        ];
        let clients = AwsClients::from_lookup(lookup(&vars)).unwrap();
        let endpoints = clients.endpoints();
        assert_eq!(endpoints.sqs.as_deref(), Some("http://127.0.0.1:9324"));
        assert_eq!(endpoints.sns.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(endpoints.dynamodb.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(
            endpoints.dynamodb_streams.as_deref(),
            Some("http://127.0.0.1:4566")
        );
    }

    #[test]
    fn endpoints_describe_themselves_in_one_line() {
        let shared = AwsEndpoints {
            dynamodb: Some("http://e".to_owned()),
            dynamodb_streams: Some("http://e".to_owned()),
            sns: Some("http://e".to_owned()),
            sqs: Some("http://e".to_owned()),
        };
        assert_eq!(
            shared.to_string(),
            "DynamoDB, DynamoDB Streams, SNS and SQS at http://e"
        );
        assert_eq!(
            AwsEndpoints::default().to_string(),
            "DynamoDB, DynamoDB Streams, SNS and SQS at real AWS"
        );
        let mixed = AwsEndpoints {
            sqs: Some("http://q".to_owned()),
            ..AwsEndpoints::default()
        };
        assert_eq!(
            mixed.to_string(),
            "DynamoDB at real AWS, DynamoDB Streams at real AWS, SNS at real AWS, SQS at http://q"
        );
    }

    #[test]
    fn no_endpoint_means_real_aws_and_ignoring_them_is_honoured() {
        let clients = AwsClients::from_lookup(lookup(&BASE)).unwrap();
        assert_eq!(clients.endpoints(), &AwsEndpoints::default());
        let vars = [
            BASE[0],
            BASE[1],
            BASE[2],
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ];
        let clients = AwsClients::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(clients.endpoints(), &AwsEndpoints::default());
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_refused() {
        let vars = [
            BASE[0],
            BASE[1],
            BASE[2],
            ("AWS_ENDPOINT_URL_DYNAMODB", "localhost:8000"),
        ];
        let error = AwsClients::from_lookup(lookup(&vars)).unwrap_err();
        assert!(
            error.to_string().contains("AWS_ENDPOINT_URL_DYNAMODB"),
            "{error}"
        );
    }

    #[test]
    fn dead_letter_queues_follow_the_queue_kind() {
        let standard = QueueNames::of("claims").unwrap();
        assert_eq!(
            (standard.dead_letter.as_str(), standard.fifo),
            ("claims-dlq", false)
        );
        let fifo = QueueNames::of("claims.fifo").unwrap();
        assert_eq!(
            (fifo.dead_letter.as_str(), fifo.fifo),
            ("claims-dlq.fifo", true)
        );
        assert!(QueueNames::of("bad name").is_err());
        assert!(QueueNames::of(&"q".repeat(78)).is_err());
    }

    #[test]
    fn json_attributes_compare_by_meaning() {
        let wanted = r#"{"deadLetterTargetArn":"arn:dlq","maxReceiveCount":5}"#;
        let answered = r#"{"maxReceiveCount":"5", "deadLetterTargetArn":"arn:dlq"}"#;
        assert!(same_attribute(
            &QueueAttributeName::RedrivePolicy,
            Some(&answered.to_owned()),
            wanted
        ));
        assert!(!same_attribute(
            &QueueAttributeName::RedrivePolicy,
            None,
            wanted
        ));
        assert!(!same_attribute(
            &QueueAttributeName::VisibilityTimeout,
            Some(&"30".to_owned()),
            "60"
        ));
    }

    #[test]
    fn filter_policies_are_on_the_type_attribute_in_a_stable_order() {
        let subscription = |filter| TopicSubscription {
            topic: "t".to_owned(),
            filter,
        };
        let types = TypeFilter::Types(vec!["b".to_owned(), "a".to_owned(), "a".to_owned()]);
        assert_eq!(
            subscription(types).filter_policy(),
            Some(serde_json::json!({"type": ["a", "b"]}))
        );
        let prefixes = TypeFilter::Prefixes(vec!["policy.".to_owned()]);
        assert_eq!(
            subscription(prefixes).filter_policy(),
            Some(serde_json::json!({"type": [{"prefix": "policy."}]}))
        );
        assert_eq!(subscription(TypeFilter::All).filter_policy(), None);
    }
}

//! AWS clients from the environment, for a service's DynamoDB store and its SNS/SQS
//! events transport.
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
//! Provisioning of topics, queues and subscriptions is dovetail-events' job:
//! [`AwsClients::transport`] hands its SNS and SQS clients to
//! [`dovetail_events::transport::Transport`].

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::{RetryConfig, TimeoutConfig};

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
/// use dovetail_events::transport::{Subscription, TypeFilter};
/// use dovetail_service_kit::aws::AwsClients;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let aws = AwsClients::from_env()?;
/// let transport = aws.transport("staging-");
/// let publisher = transport.publisher("policy-events").await?;
/// let source = transport
///     .subscribe(&Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All))
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

    /// dovetail-events' SNS/SQS transport over these clients, with `name_prefix` before
    /// every topic and queue name (it provisions topics, queues, dead-letter queues and
    /// subscriptions; see [`dovetail_events::transport`]).
    pub fn transport(&self, name_prefix: &str) -> dovetail_events::transport::Transport {
        dovetail_events::transport::Transport::aws(self.sns.clone(), self.sqs.clone())
            .with_aws_name_prefix(name_prefix)
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
}

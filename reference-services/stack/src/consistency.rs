//! The stack's consistency runner (port 8085): checks each replica against its owner on a
//! schedule and on request, repairs through the owners, serves the staff endpoints
//! `POST /admin/consistency/runs` and `GET /admin/consistency/runs[/{id}]`, and
//! `/metrics` with the `dovetail_consistency_*` series.
//!
//! | pair or invariant | owner (source) | replica | repair |
//! |---|---|---|---|
//! | policies | policy service | the claim service's policy replica | the policy service republishes |
//! | policies | policy service | the search index's policy documents | the policy service republishes |
//! | claims | claim service | the search index's claim documents | the claim service republishes |
//! | `claim-policy` invariant | claim service (its claims) | policy service (through the replica) | – (reported) |
//!
//! The runner reads each store through its [`View`](dovetail_consistency::View), wired here
//! in the stack's process, and records its runs, with the lease that lets one runner run
//! at a time across every stack sharing them, in `data/consistency.db`
//! ([`SqliteRunStore`]) on embedded backends, and in the DynamoDB table
//! [`RUNS_TABLE`] (after the stack's `aws_name_prefix`) on `--aws` (`DynamoDbRunStore`).
//! Every store has a view on both backends; one without would be left out of the pairs,
//! and the log would say so.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dovetail_consistency::runner::http::router;
use std::sync::Arc;

use dovetail_claim::invariants::ClaimPolicyInvariant;
use dovetail_consistency::{Pair, RunStore, Runner, RunnerConfig, SqliteRunStore};
use dovetail_http::identity::IdentityLayer;
use dovetail_search::document::DocumentType;
use dovetail_service_kit::config::IdentityConfig;
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

/// The runner's name: the audience of the tokens its endpoints accept, its `service`
/// metrics label.
pub const SERVICE: &str = "consistency-service";

/// The policy service's name in run records and metric labels.
const POLICY_SERVICE: &str = "policy-service";
/// The search index's policy documents, as a replica's name.
pub const SEARCH_POLICIES: &str = "search-service/policies";
/// The search index's claim documents, as a replica's name.
pub const SEARCH_CLAIMS: &str = "search-service/claims";

/// The DynamoDB table of the runs and the lease on `--aws`, after the stack's
/// `aws_name_prefix` (default `dovetail-consistency-runs`).
pub const RUNS_TABLE: &str = "consistency-runs";

/// How the stack's runner runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencySettings {
    /// Time between scheduled runs (default 5 minutes), plus up to `jitter`.
    pub interval: Duration,
    /// The random part added to each interval (default 30 s).
    pub jitter: Duration,
    /// How long an owner's write may take to reach its replicas (default 30 s): newer
    /// differences are left for the next run.
    pub expected_lag: Duration,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            expected_lag: Duration::from_secs(30),
        }
    }
}

/// The runner, bound and wired, not yet running.
#[derive(Debug)]
pub(crate) struct ConsistencyService {
    http: ServiceHttp,
    runner: Runner,
}

/// What the runner checks, from the services the stack built.
pub(crate) struct Owners<'a> {
    pub(crate) policy: &'a dovetail_policy::Application,
    pub(crate) claim: &'a dovetail_claim::Application,
    pub(crate) search: &'a dovetail_search::Application,
}

impl ConsistencyService {
    /// Opens the run store under `data_dir`, wires the pairs and binds `listen`.
    pub(crate) async fn build(
        listen: SocketAddr,
        backends: crate::Backends,
        data_dir: &Path,
        runs_table: &str,
        settings: &ConsistencySettings,
        identity: &IdentityConfig,
        owners: &Owners<'_>,
    ) -> anyhow::Result<Self> {
        let store = run_store(backends, data_dir, runs_table).await?;
        let mut config = RunnerConfig::new(format!("{SERVICE}-{}", std::process::id()));
        config.interval = settings.interval;
        config.jitter = settings.jitter;
        config.check.expected_lag = settings.expected_lag;
        let mut builder = Runner::builder(store, config);
        let (pairs, invariant) = pairs(owners);
        if pairs.is_empty() {
            tracing::warn!(
                "consistency runner: the stores have no consistency views on this backend; \
                 runs will check nothing"
            );
        }
        for pair in pairs {
            builder = builder.pair(pair);
        }
        if let Some(invariant) = invariant {
            builder = builder.invariant(invariant);
        }
        let runner = builder.build();
        let identity = IdentityLayer::new(identity.verifier(SERVICE)?);
        let http = ServiceHttp::bind(
            SERVICE,
            listen,
            router(runner.clone()).layer(identity),
            Readiness::default(),
        )
        .await?;
        Ok(Self { http, runner })
    }

    /// Where the staff endpoints listen.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves the endpoints and runs checks until `shutdown` (a run in progress is cut
    /// short and recorded as failed).
    pub(crate) async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let runner = self.runner;
        let background =
            Background::default().consumer("consistency-runner", move |stop| async move {
                runner
                    .run_until_stopped(async move { stop.cancelled().await })
                    .await;
                Ok(())
            });
        Ok(self.http.run_until_stopped(background, shutdown).await?)
    }
}

/// The pairs the stores have views for, and the claim-policy invariant when the claim
/// store can run it.
fn pairs(owners: &Owners<'_>) -> (Vec<Pair>, Option<ClaimPolicyInvariant>) {
    let policies = owners.policy.store();
    let claims = owners.claim.store();
    let index = owners.search.index();
    let mut pairs = Vec::new();
    if let Some(owner) = policies.consistency_view() {
        if let Some(replica) = claims.policy_replica_view() {
            pairs.push(
                Pair::new(
                    POLICY_SERVICE,
                    owner.clone(),
                    dovetail_claim::SERVICE,
                    replica,
                )
                .repaired_by(policies.clone()),
            );
        }
        pairs.push(
            Pair::new(
                POLICY_SERVICE,
                owner,
                SEARCH_POLICIES,
                index.consistency_view(DocumentType::Policy),
            )
            .repaired_by(policies.clone()),
        );
    }
    if let Some(owner) = claims.consistency_view() {
        pairs.push(
            Pair::new(
                dovetail_claim::SERVICE,
                owner,
                SEARCH_CLAIMS,
                index.consistency_view(DocumentType::Claim),
            )
            .repaired_by(claims.clone()),
        );
    }
    let invariant = claims
        .policy_replica_view()
        .map(|_| ClaimPolicyInvariant::new(claims.clone()));
    (pairs, invariant)
}

/// Where the runs and the lease live on `backends`.
async fn run_store(
    backends: crate::Backends,
    data_dir: &Path,
    runs_table: &str,
) -> anyhow::Result<Arc<dyn RunStore>> {
    match backends {
        crate::Backends::Embedded => {
            let path = data_dir.join("consistency.db");
            let store = SqliteRunStore::open(&path).map_err(|error| {
                anyhow::anyhow!(
                    "opening the consistency runs at {}: {error}",
                    path.display()
                )
            })?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "aws")]
        crate::Backends::Aws => {
            let clients = dovetail_service_kit::aws::AwsClients::from_env()?;
            let store =
                dovetail_consistency::DynamoDbRunStore::new(clients.dynamodb().clone(), runs_table);
            store
                .create_table_if_missing()
                .await
                .map_err(|error| anyhow::anyhow!("opening the consistency runs: {error}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "aws"))]
        crate::Backends::Aws => anyhow::bail!(
            "this stack was built without the `aws` feature: build it with its default features for --aws"
        ),
    }
}

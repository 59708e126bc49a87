//! [`EnvelopeLayer`]: decodes each delivery's body into an [`Envelope`] for a handler of
//! envelopes, inside a tracing span that continues the trace the envelope carries.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use time::OffsetDateTime;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{Delivery, HandlerError};
use crate::envelope::Envelope;

/// Turns a `Service<Envelope>` into a `Service<Delivery>` for a consumer runtime.
///
/// A body that is not an envelope is rejected (to the dead-letter queue, with the parse
/// error as the reason). Each envelope is handled in a span `dovetail.event` that carries
/// the event's id, type, source, aggregate, sequence, correlation id, the W3C trace id and
/// parent span id of the producer (so logs join the producer's trace), the receive count,
/// and the event's age at receipt in milliseconds. With the feature `metrics`, that age is
/// also the histogram `dovetail_event_age_seconds{type}`.
///
/// # Example
/// ```
/// use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
/// use dovetail_events::envelope::Envelope;
/// use tower::Layer;
///
/// let handler = EnvelopeLayer.layer(tower::service_fn(|envelope: Envelope| async move {
///     println!("{} #{}", envelope.event_type().as_str(), envelope.sequence().get());
///     Ok::<(), HandlerError>(())
/// }));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvelopeLayer;

impl<S> Layer<S> for EnvelopeLayer {
    type Service = EnvelopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnvelopeService { inner }
    }
}

/// A handler of envelopes, fed by deliveries; made by [`EnvelopeLayer`].
#[derive(Debug, Clone)]
pub struct EnvelopeService<S> {
    inner: S,
}

impl<S> Service<Delivery> for EnvelopeService<S>
where
    S: Service<Envelope, Response = (), Error = HandlerError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let envelope = match serde_json::from_str::<Envelope>(&delivery.body) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!(
                    "message {} is not a valid event envelope: {error}",
                    delivery.message_id
                );
                return Box::pin(std::future::ready(Err(HandlerError::rejected(reason))));
            }
        };
        let age = age_at_receipt(&envelope);
        #[cfg(feature = "metrics")]
        metrics::histogram!("dovetail_event_age_seconds", "type" => envelope.event_type().as_str().to_owned())
            .record(age.as_secs_f64());
        let span = span_for(&envelope, &delivery, age);
        Box::pin(self.inner.call(envelope).instrument(span))
    }
}

/// How long ago the event occurred (zero when the producer's clock is ahead).
pub(crate) fn age_at_receipt(envelope: &Envelope) -> Duration {
    let age = OffsetDateTime::now_utc() - envelope.occurred_at();
    age.try_into().unwrap_or(Duration::ZERO)
}

fn span_for(envelope: &Envelope, delivery: &Delivery, age: Duration) -> tracing::Span {
    let (trace_id, parent_span_id) =
        envelope
            .trace()
            .map_or((String::new(), String::new()), |trace| {
                (
                    hex(&trace.traceparent.trace_id()),
                    hex(&trace.traceparent.parent_id()),
                )
            });
    tracing::info_span!(
        "dovetail.event",
        event.id = %envelope.id(),
        event.type = envelope.event_type().as_str(),
        event.source = envelope.source().as_str(),
        aggregate.type = envelope.aggregate_type().as_str(),
        aggregate.id = envelope.aggregate_id().as_str(),
        aggregate.sequence = envelope.sequence().get(),
        correlation_id = envelope.correlation_id().map(|id| id.to_string()),
        trace_id = trace_id,
        parent_span_id = parent_span_id,
        receive_count = delivery.receive_count,
        age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_body_that_is_not_an_envelope_is_rejected_with_the_reason() {
        let service = EnvelopeLayer.layer(tower::service_fn(|_: Envelope| async {
            Ok::<(), HandlerError>(())
        }));
        let error = service
            .oneshot(Delivery::new("m-1", r#"{"id": 3}"#))
            .await
            .expect_err("not an envelope");
        assert!(!error.is_retriable());
        assert!(
            error.reason().contains("m-1 is not a valid event envelope"),
            "{error}"
        );
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}

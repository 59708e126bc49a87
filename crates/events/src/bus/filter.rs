//! Subscription filters of the embedded bus, written like SNS filter policies on message
//! attributes: `{"type": ["policy.issued", {"prefix": "claim."}]}`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::envelope::MessageAttributes;

/// Which messages a subscription receives, by their message attributes.
///
/// Every attribute named in the filter must be present and equal one of its alternatives:
/// an exact string, or `{"prefix": "..."}`. An empty filter accepts everything. This is the
/// part of SNS's filter-policy syntax that events need, so one policy serves both the
/// embedded bus and SNS.
///
/// # Example
/// ```
/// use dovetail_events::bus::SubscriptionFilter;
///
/// let filter = SubscriptionFilter::from_json(&serde_json::json!({
///     "type": ["policy.issued", {"prefix": "claim."}]
/// }))?;
/// assert!(filter.accepts(|name| (name == "type").then_some("claim.filed")));
/// assert!(!filter.accepts(|name| (name == "type").then_some("policy.cancelled")));
/// # Ok::<(), dovetail_events::bus::FilterError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    rules: BTreeMap<String, Vec<Alternative>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Alternative {
    Exactly(String),
    Prefix(String),
}

/// A filter policy the embedded bus cannot use.
///
/// ### Handling
/// Fix the policy: the message names the attribute and says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subscription filter: {0}")]
pub struct FilterError(String);

impl SubscriptionFilter {
    /// Accepts every message.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses an SNS-style filter policy: an object whose values are arrays of strings or
    /// `{"prefix": "..."}` objects.
    ///
    /// # Errors
    /// [`FilterError`] naming the attribute whose rule is not of that form.
    pub fn from_json(policy: &Value) -> Result<Self, FilterError> {
        let object = policy.as_object().ok_or_else(|| {
            FilterError(format!(
                "a filter policy is a JSON object of attribute name to alternatives, got {policy}"
            ))
        })?;
        let mut rules = BTreeMap::new();
        for (name, alternatives) in object {
            let list = alternatives.as_array().ok_or_else(|| {
                FilterError(format!(
                    "the rule for `{name}` must be an array of alternatives, got {alternatives}"
                ))
            })?;
            if list.is_empty() {
                return Err(FilterError(format!(
                    "the rule for `{name}` has no alternatives, so it would accept nothing"
                )));
            }
            let parsed = list
                .iter()
                .map(|alternative| parse_alternative(name, alternative))
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(name.clone(), parsed);
        }
        Ok(Self { rules })
    }

    /// The policy back in its JSON form.
    pub fn to_json(&self) -> Value {
        let object = self
            .rules
            .iter()
            .map(|(name, alternatives)| {
                let list = alternatives
                    .iter()
                    .map(|alternative| match alternative {
                        Alternative::Exactly(value) => Value::String(value.clone()),
                        Alternative::Prefix(prefix) => serde_json::json!({ "prefix": prefix }),
                    })
                    .collect();
                (name.clone(), Value::Array(list))
            })
            .collect();
        Value::Object(object)
    }

    /// Whether a message whose attributes `lookup` returns passes the filter.
    pub fn accepts<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.rules.iter().all(|(name, alternatives)| {
            lookup(name).is_some_and(|value| {
                alternatives.iter().any(|alternative| match alternative {
                    Alternative::Exactly(expected) => value == expected,
                    Alternative::Prefix(prefix) => value.starts_with(prefix.as_str()),
                })
            })
        })
    }

    /// Whether a message with these attributes passes the filter.
    pub fn accepts_attributes(&self, attributes: &MessageAttributes) -> bool {
        self.accepts(|name| attributes.get(name))
    }
}

fn parse_alternative(name: &str, alternative: &Value) -> Result<Alternative, FilterError> {
    match alternative {
        Value::String(value) => Ok(Alternative::Exactly(value.clone())),
        Value::Object(object) if object.len() == 1 => match object.get("prefix") {
            Some(Value::String(prefix)) => Ok(Alternative::Prefix(prefix.clone())),
            _ => Err(unsupported(name, alternative)),
        },
        _ => Err(unsupported(name, alternative)),
    }
}

fn unsupported(name: &str, alternative: &Value) -> FilterError {
    FilterError(format!(
        "the rule for `{name}` has the alternative {alternative}; the embedded bus accepts \
         strings and {{\"prefix\": \"...\"}} objects"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn every_named_attribute_must_match_one_alternative() {
        let filter = SubscriptionFilter::from_json(&json!({
            "type": ["policy.issued", {"prefix": "claim."}],
            "source": ["policy-service", "claim-service"],
        }))
        .unwrap();
        assert!(filter.accepts(lookup(&[
            ("type", "claim.filed"),
            ("source", "claim-service")
        ])));
        assert!(
            !filter.accepts(lookup(&[("type", "claim.filed")])),
            "source missing"
        );
        assert!(!filter.accepts(lookup(&[
            ("type", "policy.cancelled"),
            ("source", "policy-service")
        ])));
        assert!(SubscriptionFilter::all().accepts(lookup(&[])));
    }

    #[test]
    fn round_trips_through_json() {
        let policy = json!({"type": ["a", {"prefix": "b."}]});
        assert_eq!(
            SubscriptionFilter::from_json(&policy).unwrap().to_json(),
            policy
        );
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (policy, needle) in [
            (json!(["type"]), "JSON object"),
            (json!({"type": "a"}), "`type` must be an array"),
            (json!({"type": []}), "no alternatives"),
            (json!({"type": [{"anything-but": ["a"]}]}), "prefix"),
            (json!({"type": [1]}), "accepts strings"),
        ] {
            let message = SubscriptionFilter::from_json(&policy)
                .unwrap_err()
                .to_string();
            assert!(message.contains(needle), "{policy}: {message}");
        }
    }
}

//! Redis: SET NX with an expiry takes a key once, and the key expires.

use std::time::Duration;

#[tokio::test]
async fn set_nx_with_expiry_takes_a_key_once_until_it_expires() {
    let redis = dovetail_testkit::redis().await;
    let mut connection = redis.connection().await;
    let key = redis.key("claim-lock");

    let set_nx = |owner: &'static str| {
        let mut command = redis::cmd("SET");
        command.arg(&key).arg(owner).arg("NX").arg("PX").arg(300);
        command
    };

    let first: Option<String> = set_nx("relay-a")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        first.as_deref(),
        Some("OK"),
        "the first SET NX takes the key"
    );

    let second: Option<String> = set_nx("relay-b")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(second, None, "a second SET NX on a live key is refused");

    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (1..=300).contains(&ttl),
        "the key carries its expiry, PTTL = {ttl}"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let owner: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(owner, None, "the key expired");
    let third: Option<String> = set_nx("relay-b")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        third.as_deref(),
        Some("OK"),
        "an expired key can be taken again"
    );
}

//! Key rotation: the new key is published first and signs a moment later, old tokens
//! still verify, and the JWKS lists both keys.

use serde_json::Value;

use crate::support::{PASSWORD, Service, header_of};

#[tokio::test]
async fn after_rotation_new_tokens_name_the_new_key_and_old_ones_still_verify() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    let old_token = service.token("ada@example.com", PASSWORD).await;
    let old_kid = header_of(&old_token)["kid"].as_str().unwrap().to_owned();
    let verifier = service.verifier("claim-service");
    verifier.verify(&old_token).await.unwrap();

    let new_kid = service.admin.rotate_signing_key().await.unwrap();
    assert_ne!(new_kid, old_kid);
    let meanwhile = service.token("ada@example.com", PASSWORD).await;
    assert_eq!(
        header_of(&meanwhile)["kid"],
        old_kid.as_str(),
        "the new key is only published for the first second"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new_token = service.token("ada@example.com", PASSWORD).await;
    assert_eq!(header_of(&new_token)["kid"], new_kid.as_str());

    let jwks: Value = service
        .http
        .get(service.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [old_kid.as_str(), new_kid.as_str()]);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|key| key.get("d").is_none()),
        "no private part in the JWKS"
    );

    // A fresh verifier (and the one that cached the old set, fetching again for the
    // unknown kid) accept both tokens.
    let fresh = service.verifier("policy-service");
    for token in [&old_token, &new_token] {
        fresh.verify(token).await.unwrap();
        verifier.verify(token).await.unwrap();
    }
    // The service itself accepts a token of either key.
    for token in [&old_token, &new_token] {
        let response = service
            .post_as(
                token,
                "/users/me/password",
                &serde_json::json!({"current_password": "wrong wrong", "new_password": "whatever it is"}),
            )
            .await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["type"],
            "https://dovetail.dev/problems/invalid-credentials"
        );
    }
    service.stop().await;
}

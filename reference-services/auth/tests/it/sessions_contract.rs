//! One contract suite for every `SessionStore`: rotation, reuse, concurrent refreshes,
//! expiry, revocation and failure windows, run here on a real SQLite file and in
//! `needs_servers::sessions_redis` on a real Redis; and a Redis on a closed port.

use std::time::{Duration, SystemTime};

use dovetail_auth::sessions::{
    CredentialStamp, NewFamily, RedisSessionStore, RefreshToken, Rotation, SessionStore,
    SqliteSessionStore, TokenDigest,
};

const DAY: Duration = Duration::from_secs(86_400);

fn sqlite() -> SqliteSessionStore {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-auth-sessions-{}",
        uuid::Uuid::new_v4().simple()
    ));
    SqliteSessionStore::open(&dir.join("sessions.db")).unwrap()
}

fn digest() -> TokenDigest {
    RefreshToken::generate().unwrap().digest()
}

/// Starts a family for `user` with a first token valid for `token_ttl`, the family for
/// `family_ttl`; returns (family id, first token).
async fn start(
    store: &impl SessionStore,
    user: &str,
    token_ttl: Duration,
    family_ttl: Duration,
) -> (String, TokenDigest) {
    let now = SystemTime::now();
    let family_id = format!("fam-{}", uuid::Uuid::new_v4().simple());
    let first = digest();
    store
        .start(NewFamily {
            family_id: family_id.clone(),
            user_id: user.to_owned(),
            credential: CredentialStamp::of("$argon2id$stamp"),
            first,
            token_expires: now + token_ttl,
            family_expires: now + family_ttl,
        })
        .await
        .unwrap();
    (family_id, first)
}

async fn rotate(store: &impl SessionStore, presented: TokenDigest, next: TokenDigest) -> Rotation {
    let now = SystemTime::now();
    store.rotate(presented, next, now + DAY, now).await.unwrap()
}

/// The whole contract, on `store`.
pub(crate) async fn contract(store: impl SessionStore) {
    rotation_then_reuse_revokes_the_family(&store).await;
    concurrent_refreshes_of_one_token_rotate_once(&store).await;
    expired_tokens_and_families_are_refused(&store).await;
    log_out_and_user_revocation(&store).await;
    failure_windows(&store).await;
    store.ping().await.unwrap();
}

async fn rotation_then_reuse_revokes_the_family(store: &impl SessionStore) {
    let (family_id, first) = start(store, "usr-a", DAY, 30 * DAY).await;
    let second = digest();
    let Rotation::Rotated(family) = rotate(store, first, second).await else {
        panic!("the current token rotates");
    };
    assert_eq!(family.family_id, family_id);
    assert_eq!(family.user_id, "usr-a");
    assert_eq!(family.credential, CredentialStamp::of("$argon2id$stamp"));
    let family_left = family.expires.duration_since(SystemTime::now()).unwrap();
    assert!(family_left > 29 * DAY && family_left <= 30 * DAY);
    let peeked = store.family_of(first).await.unwrap().unwrap();
    assert_eq!(peeked.family_id, family_id);
    assert_eq!(peeked.user_id, "usr-a");
    assert_eq!(store.family_of(digest()).await.unwrap(), None);
    let third = digest();
    assert!(matches!(
        rotate(store, second, third).await,
        Rotation::Rotated(_)
    ));
    // The first token again: reuse; the family, newest token included, is revoked.
    assert!(
        matches!(rotate(store, first, digest()).await, Rotation::Reused(ref f) if f.family_id == family_id)
    );
    assert_eq!(rotate(store, third, digest()).await, Rotation::Revoked);
    assert_eq!(rotate(store, second, digest()).await, Rotation::Revoked);
    assert_eq!(rotate(store, digest(), digest()).await, Rotation::Unknown);
}

async fn concurrent_refreshes_of_one_token_rotate_once(store: &impl SessionStore) {
    for _ in 0..5 {
        let (_, first) = start(store, "usr-race", DAY, 30 * DAY).await;
        let (one, two) = (digest(), digest());
        let (a, b) = tokio::join!(
            {
                let store = store.clone();
                async move { rotate(&store, first, one).await }
            },
            {
                let store = store.clone();
                async move { rotate(&store, first, two).await }
            }
        );
        let rotated = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated(_)))
            .count();
        let reused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Rotation::Reused(_)))
            .count();
        assert_eq!((rotated, reused), (1, 1), "{a:?} {b:?}");
        let winner = if matches!(a, Rotation::Rotated(_)) {
            one
        } else {
            two
        };
        assert_eq!(rotate(store, winner, digest()).await, Rotation::Revoked);
    }
}

async fn expired_tokens_and_families_are_refused(store: &impl SessionStore) {
    let now = SystemTime::now();
    let (_, first) = start(store, "usr-e", Duration::from_secs(60), 30 * DAY).await;
    let later = now + Duration::from_secs(120);
    assert_eq!(
        store
            .rotate(first, digest(), later + DAY, later)
            .await
            .unwrap(),
        Rotation::Expired
    );

    // A new token never outlives its family.
    let (_, first) = start(store, "usr-e", DAY, Duration::from_secs(60)).await;
    let next = digest();
    assert!(matches!(
        rotate(store, first, next).await,
        Rotation::Rotated(_)
    ));
    assert_eq!(
        store
            .rotate(next, digest(), later + DAY, later)
            .await
            .unwrap(),
        Rotation::Expired
    );
}

async fn log_out_and_user_revocation(store: &impl SessionStore) {
    let (_, token) = start(store, "usr-l", DAY, 30 * DAY).await;
    assert!(store.revoke_family_of(token).await.unwrap());
    assert_eq!(rotate(store, token, digest()).await, Rotation::Revoked);
    assert!(!store.revoke_family_of(digest()).await.unwrap());

    let (_, one) = start(store, "usr-p", DAY, 30 * DAY).await;
    let (_, two) = start(store, "usr-p", DAY, 30 * DAY).await;
    let (other_family, other) = start(store, "usr-q", DAY, 30 * DAY).await;
    assert_eq!(store.revoke_user("usr-p").await.unwrap(), 2);
    assert_eq!(store.revoke_user("usr-p").await.unwrap(), 0);
    assert_eq!(rotate(store, one, digest()).await, Rotation::Revoked);
    assert_eq!(rotate(store, two, digest()).await, Rotation::Revoked);
    assert!(matches!(
        rotate(store, other, digest()).await,
        Rotation::Rotated(_)
    ));

    store.revoke_family(&other_family).await.unwrap();
    let (_, after) = start(store, "usr-q", DAY, 30 * DAY).await;
    assert!(matches!(
        rotate(store, after, digest()).await,
        Rotation::Rotated(_)
    ));
}

async fn failure_windows(store: &impl SessionStore) {
    let key = format!("login:account:{}", uuid::Uuid::new_v4().simple());
    let now = SystemTime::now;
    assert_eq!(store.failures(&key, now()).await.unwrap(), None);
    for expected in 1..=3 {
        let window = store
            .record_failure(&key, Duration::from_secs(900), now())
            .await
            .unwrap();
        assert_eq!(window.failures, expected);
        assert!(window.resets_in <= Duration::from_secs(900));
        assert!(window.resets_in > Duration::from_secs(890));
    }
    store.forgive_failure(&key).await.unwrap();
    let window = store.failures(&key, now()).await.unwrap().unwrap();
    assert_eq!(window.failures, 2);
    store.clear_failures(&key).await.unwrap();
    assert_eq!(store.failures(&key, now()).await.unwrap(), None);
    store.forgive_failure(&key).await.unwrap();
    assert_eq!(
        store.failures(&key, now()).await.unwrap(),
        None,
        "forgiving opens no window"
    );

    // Attempts counted at once each get their own count.
    let mut counting = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (store, key) = (store.clone(), key.clone());
        counting.spawn(async move {
            store
                .record_failure(&key, Duration::from_secs(900), SystemTime::now())
                .await
                .unwrap()
                .failures
        });
    }
    let mut counts = counting.join_all().await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<u32>>());
    store.clear_failures(&key).await.unwrap();

    // A window ends at its fixed time, and the next failure opens a new one.
    let short = Duration::from_millis(300);
    store.record_failure(&key, short, now()).await.unwrap();
    store.record_failure(&key, short, now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.failures(&key, now()).await.unwrap(), None);
    assert_eq!(
        store
            .record_failure(&key, short, now())
            .await
            .unwrap()
            .failures,
        1
    );
}

#[tokio::test]
async fn the_sqlite_session_store_passes_the_contract() {
    contract(sqlite()).await;
}

#[tokio::test]
async fn a_redis_on_a_closed_port_is_a_backend_error_that_names_the_store_not_a_hang() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = RedisSessionStore::open(&format!("redis://127.0.0.1:{port}"), "down:").unwrap();
    let started = std::time::Instant::now();
    let error = store.ping().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.to_string().contains("Redis session store"), "{error}");
    let error = rotate_error(&store).await;
    assert!(error.contains("rotating a refresh token"), "{error}");
}

async fn rotate_error(store: &RedisSessionStore) -> String {
    let now = SystemTime::now();
    store
        .rotate(digest(), digest(), now + DAY, now)
        .await
        .unwrap_err()
        .to_string()
}

//! The store suite: every case runs on SQLite and on Postgres
//! (`HELIX_TEST_DATABASE_URL`, a fresh database per test).

use std::collections::BTreeMap;

use helix_core::api::DeploymentState;
use helix_core::build::{BuildContext, BuildState};
use helix_core::events::Event;
use helix_core::identity::Role;
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_store::{BuildEnd, Finalized, NewBuild, NewLink, PointerError, Queued, Ready, Store};
use helix_store::{NewAudit, NewDeployment, NewToken};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                super::$name(Store::open(&url).await.unwrap()).await;
            })*
            use helix_store::Store;
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(url) = helix_testkit::fresh_postgres(stringify!($name)).await else { return };
                super::$name(Store::open(&url).await.unwrap()).await;
            })*
            use helix_store::Store;
        }
    };
}

suite!(
    a_fresh_store_is_empty,
    tokens,
    create_finalize_and_list,
    events_are_numbered_in_commit_order,
    concurrent_writers_of_one_project_never_deadlock,
    finalize_promotes_when_asked_and_writes_events,
    promote_and_rollback_walk_the_pointer,
    rollback_errors,
    failed_and_abandoned_uploads_are_never_served,
    variants_round_trip,
    splits_replace_atomically,
    links_find_projects_by_repository,
    the_build_queue_leases_supersedes_and_dedups,
    aliases_point_at_finalized_deployments,
    a_cron_slot_is_claimed_once,
    function_logs_are_read_after_a_cursor,
    deployments_list_in_pages,
    a_verified_domain_belongs_to_one_project,
);

async fn a_verified_domain_belongs_to_one_project(store: Store) {
    use helix_store::{Claim, NewDomain, Verified};
    for p in ["a", "b", "c"] {
        ready(&store, p, true).await;
    }
    let id = |p: &'static str| {
        let store = &store;
        async move { store.identity().project_ref(p).await.unwrap().unwrap().id }
    };
    let (a, b, c) = (id("a").await, id("b").await, id("c").await);
    let claim = |project_id: &str, token: &'static str| {
        let project_id = project_id.to_owned();
        let store = &store;
        async move {
            let new = NewDomain {
                project_id: &project_id,
                name: "shop.example.com",
                token,
                previews: false,
                redirect_to: None,
                max: 2,
            };
            store.domains().add_domain(new, &audit()).await.unwrap()
        }
    };
    drain_outbox(&store).await;
    assert!(matches!(claim(&a, "ta").await, Claim::Added(..)));
    assert!(matches!(claim(&b, "tb").await, Claim::Added(..)), "pending claims coexist");
    assert!(matches!(claim(&b, "other").await, Claim::Exists(row) if row.token == "tb"), "a repeat changes nothing");
    assert!(matches!(
        store.domains().verify_domain(&a, "shop.example.com", &audit()).await.unwrap(),
        Verified::Now(..)
    ));
    // The unique index refuses the second proof, whatever the caller checked.
    assert!(matches!(store.domains().verify_domain(&b, "shop.example.com", &audit()).await.unwrap(), Verified::Taken));
    assert!(matches!(claim(&c, "tc").await, Claim::Taken));
    assert!(matches!(
        store.domains().verify_domain(&a, "shop.example.com", &audit()).await.unwrap(),
        Verified::Already(..)
    ));
    let events = drain_outbox(&store).await;
    assert_eq!(events.len(), 3, "two claims and one proof: {events:?}");
    let state = store.serving_state().await.unwrap();
    let served: Vec<(&str, bool)> =
        state.domains.iter().map(|d| (d.project.as_str(), d.verified_at_ms.is_some())).collect();
    assert_eq!(served, vec![("a", true), ("b", false)]);

    let (gone, _) = store.domains().remove_domain(&a, "shop.example.com", &audit()).await.unwrap().unwrap();
    assert_eq!(gone.token, "ta");
    assert_eq!(
        drain_outbox(&store).await,
        vec![Event::DomainRemoved { project: project("a"), domain: "shop.example.com".into(), token: "ta".into() }]
    );
    assert!(matches!(
        store.domains().verify_domain(&b, "shop.example.com", &audit()).await.unwrap(),
        Verified::Now(..)
    ));
    assert_eq!(store.domains().claimants("shop.example.com").await.unwrap(), vec![(project("b"), true)]);
}

async fn deployments_list_in_pages(store: Store) {
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(ready(&store, "paged", false).await.to_string());
    }
    made.reverse();
    let project = store.identity().project_ref("paged").await.unwrap().unwrap();
    let first = store.deployments().ready_deployments_page(&project.id, None, 2).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(), made[..2]);
    let second = store.deployments().ready_deployments_page(&project.id, Some(first[1].id.as_str()), 2).await.unwrap();
    assert_eq!(second.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(), made[2..4]);
    let last = store.deployments().ready_deployments_page(&project.id, Some(second[1].id.as_str()), 2).await.unwrap();
    assert_eq!(last.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(), made[4..]);
}

/// A crash (the pool dropped with nothing published) leaves committed
/// events in the outbox, in order, until the relay deletes them.
#[tokio::test]
async fn committed_events_survive_a_crash_before_they_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::open(&url).await.unwrap();
    ready(&store, "p", true).await;
    let b = ready(&store, "p", false).await;
    store.deployments().promote(b.as_str(), &audit(), 99).await.unwrap();
    drop(store);
    let store = Store::open(&url).await.unwrap();
    let pending = store.outbox_pending(100).await.unwrap();
    let topics: Vec<&str> = pending.iter().map(|(_, e)| e.event.topic()).collect();
    assert_eq!(topics, ["deploy.ready", "deploy.promoted", "deploy.ready", "deploy.promoted"]);
    assert!(pending.windows(2).all(|w| w[0].1.seq < w[1].1.seq), "in commit order");
    assert_eq!(pending[3].1.actor.as_deref(), Some("test"), "the envelope names who did it");
    for (id, _) in &pending {
        store.outbox_delete(id).await.unwrap();
    }
    assert!(store.outbox_pending(100).await.unwrap().is_empty());
}

fn audit() -> NewAudit<'static> {
    NewAudit {
        org: "default",
        actor: "test",
        token: None,
        action: "test",
        project: None,
        target: None,
        outcome: "ok",
        detail: serde_json::json!({}),
        request_id: None,
        at_ms: 1,
    }
}

fn project(name: &str) -> ProjectName {
    ProjectName::parse(name).unwrap()
}

static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_700_000_000_000);

fn new_id() -> (DeploymentId, i64) {
    let now = CLOCK.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
    (DeploymentId::generate(now, now as u128 * 7919), now as i64)
}

async fn create(store: &Store, p: &str, files: &[(&str, &[u8])], production: bool) -> (DeploymentId, i64) {
    let (id, now) = new_id();
    let files: BTreeMap<String, Digest> = files.iter().map(|(k, v)| (k.to_string(), Digest::of(v))).collect();
    store
        .deployments()
        .create_deployment(NewDeployment {
            id: &id,
            options: &Default::default(),
            project: &project(p),
            files: &files,
            production,
            org_id: "default",
            branch: None,
            commit: None,
            source: "api",
            audit: &audit(),
            now_ms: now,
        })
        .await
        .unwrap();
    (id, now)
}

async fn ready(store: &Store, p: &str, production: bool) -> DeploymentId {
    let (id, now) = create(store, p, &[("/index.html", id_bytes(p).as_slice())], production).await;
    match store
        .deployments()
        .finalize(
            &id,
            Ready { manifest: Digest::of(id.as_str().as_bytes()), total_bytes: 10, routes_json: "", alias: None },
            &audit(),
            now + 1,
        )
        .await
        .unwrap()
    {
        Finalized::Now(row, _) => assert_eq!(row.state, DeploymentState::Ready),
        other => panic!("{other:?}"),
    }
    id
}

fn id_bytes(p: &str) -> Vec<u8> {
    format!("<h1>{p}</h1>").into_bytes()
}

async fn drain_outbox(store: &Store) -> Vec<Event> {
    let pending = store.outbox_pending(1000).await.unwrap();
    for (id, _) in &pending {
        store.outbox_delete(id).await.unwrap();
    }
    pending.into_iter().map(|(_, e)| e.event).collect()
}

async fn a_fresh_store_is_empty(store: Store) {
    assert_eq!(store.identity().tokens("default", None).await.unwrap(), vec![]);
    let (entries, head, _) = store.audit().audit_chain().await.unwrap();
    assert_eq!((entries.len(), head), (0, 0));
    assert!(store.serving_state().await.unwrap().deployments.is_empty());
    assert!(store.outbox_pending(10).await.unwrap().is_empty());
    store.close().await;
}

async fn tokens(store: Store) {
    let token = |hash: &'static str, role| NewToken {
        sha256_hex: hash,
        name: "t",
        user_id: "admin",
        org_id: "default",
        role,
        project_id: None,
        read_only: false,
        server_admin: false,
        build_id: None,
        expires_at_ms: None,
        audit: Box::leak(Box::new(audit())),
        now_ms: 1,
    };
    let id = store.identity().insert_token(token("aa", Role::Viewer)).await.unwrap();
    assert!(store.identity().insert_token(token("aa", Role::Owner)).await.is_err(), "a hash is stored once");
    let row = store.identity().token_by_hash("aa").await.unwrap().unwrap();
    assert_eq!(
        (row.id.as_str(), row.user.as_str(), row.org.as_str(), row.role),
        (id.as_str(), "admin", "default", Role::Viewer)
    );
    assert!(store.identity().token_by_hash("bb").await.unwrap().is_none());
    assert!(store.identity().revoke_token(&id, &audit(), 5).await.unwrap());
    assert!(!store.identity().revoke_token(&id, &audit(), 6).await.unwrap(), "revoked once");
    assert_eq!(store.identity().token(&id).await.unwrap().unwrap().revoked_at_ms, Some(5));
    // The bootstrap membership; a project-narrowed one beside it.
    assert_eq!(store.identity().roles_of("default", "admin").await.unwrap(), vec![(None, Role::Owner)]);
    store.identity().set_member("default", "alice", Role::Developer, None, &audit(), 1).await.unwrap();
    store.identity().set_member("default", "alice", Role::Viewer, None, &audit(), 2).await.unwrap();
    assert_eq!(
        store.identity().roles_of("default", &store.identity().user_id("alice").await.unwrap().unwrap()).await.unwrap(),
        vec![(None, Role::Viewer)]
    );
    assert!(matches!(
        store.identity().remove_member("default", "admin", None, &audit()).await,
        Err(helix_store::MemberError::LastOwner)
    ));
    store.identity().remove_member("default", "alice", None, &audit()).await.unwrap();
    assert!(matches!(
        store.identity().remove_member("default", "alice", None, &audit()).await,
        Err(helix_store::MemberError::NotMember(_))
    ));
    // Every change above is in the chain, which verifies.
    let (entries, head, hash) = store.audit().audit_chain().await.unwrap();
    assert_eq!(entries.len() as u64, head);
    assert_eq!(head, 5, "a token, its revocation, two member changes and a removal: {entries:?}");
    assert!(helix_core::audit::verify(&entries, head, &hash).intact);
}

async fn create_finalize_and_list(store: Store) {
    let (id, now) = create(&store, "site", &[("/a.html", b"a"), ("/b.html", b"b")], false).await;
    // Uploading: known by id, but not listed and not served.
    let row = store.deployments().deployment(id.as_str()).await.unwrap().unwrap();
    assert_eq!(row.state, DeploymentState::Uploading);
    assert_eq!(row.file_count, 2);
    assert_eq!(store.deployments().ready_deployments(&project("site")).await.unwrap().unwrap(), vec![]);
    assert!(store.serving_state().await.unwrap().deployments.is_empty());
    let files = store.deployments().uploading_files(&id).await.unwrap().unwrap();
    assert_eq!(files["/a.html"], Digest::of(b"a"));
    let (_, uploading) = store.live_references().await.unwrap();
    assert!(uploading.contains(&Digest::of(b"b")));

    let manifest = Digest::of(b"manifest");
    let Finalized::Now(row, _) = store
        .deployments()
        .finalize(&id, Ready { manifest, total_bytes: 2, routes_json: "", alias: None }, &audit(), now + 5)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (row.state, row.total_bytes, row.ready_at_ms, row.is_production),
        (DeploymentState::Ready, 2, Some(now + 5), false)
    );
    assert!(matches!(
        store
            .deployments()
            .finalize(&id, Ready { manifest, total_bytes: 2, routes_json: "", alias: None }, &audit(), now + 6)
            .await
            .unwrap(),
        Finalized::Already(_)
    ));
    assert_eq!(store.deployments().uploading_files(&id).await.unwrap(), None);
    let listed = store.deployments().ready_deployments(&project("site")).await.unwrap().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(store.deployments().ready_deployments(&project("nope")).await.unwrap(), None);
    let serving = store.serving_state().await.unwrap();
    assert_eq!(serving.deployments, vec![(project("site"), id.clone(), manifest)]);
    assert!(serving.production.is_empty());
    assert_eq!(store.live_references().await.unwrap().0, vec![manifest]);
    assert_eq!(
        drain_outbox(&store).await,
        vec![Event::DeployReady { project: project("site"), deployment: id, manifest }]
    );
}

async fn events_are_numbered_in_commit_order(store: Store) {
    assert_eq!(store.event_seq().await.unwrap(), 0);
    let (id, now) = create(&store, "p", &[("/a", b"a")], true).await;
    let Finalized::Now(_, seq) = store
        .deployments()
        .finalize(
            &id,
            Ready { manifest: Digest::of(b"m"), total_bytes: 1, routes_json: "", alias: None },
            &audit(),
            now + 1,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(seq, 2, "ready, then promoted");
    let (_, moved) = store.deployments().promote(id.as_str(), &audit(), now + 2).await.unwrap();
    assert_eq!(moved, None, "already production: no event");
    let b = ready(&store, "p", false).await;
    let (_, moved) = store.deployments().promote(b.as_str(), &audit(), now + 3).await.unwrap();
    assert_eq!(moved, Some(4));
    let pending = store.outbox_pending(100).await.unwrap();
    assert_eq!(pending.iter().map(|(_, e)| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let state = store.serving_state().await.unwrap();
    assert_eq!(state.seq, 4, "the serving state says which event it is as of");
}

/// A production deploy finalizing while the same project is promoted, and
/// an alias set while it is removed: every transaction commits (Postgres
/// would abort one of a deadlocked pair).
async fn concurrent_writers_of_one_project_never_deadlock(store: Store) {
    let store = std::sync::Arc::new(store);
    let a = ready(&store, "p", true).await;
    let b = ready(&store, "p", false).await;
    for round in 0..20 {
        let (id, now) = create(&store, "p", &[("/i", format!("{round}").as_bytes())], true).await;
        let finalize = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .deployments()
                    .finalize(
                        &id,
                        Ready {
                            manifest: Digest::of(id.as_str().as_bytes()),
                            total_bytes: 1,
                            routes_json: "",
                            alias: Some("feature"),
                        },
                        &audit(),
                        now + 1,
                    )
                    .await
            })
        };
        let promote = {
            let (store, other) = (store.clone(), if round % 2 == 0 { a.clone() } else { b.clone() });
            tokio::spawn(async move { store.deployments().promote(other.as_str(), &audit(), now + 2).await })
        };
        let remove = {
            let store = store.clone();
            tokio::spawn(async move { store.builds().remove_alias(&project("p"), "feature", now + 3).await })
        };
        assert!(matches!(finalize.await.unwrap(), Ok(Finalized::Now(..))), "round {round}");
        promote.await.unwrap().unwrap();
        remove.await.unwrap().unwrap();
    }
    let pending = store.outbox_pending(1000).await.unwrap();
    let seqs: Vec<u64> = pending.iter().map(|(_, e)| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "numbers without gaps or repeats: {seqs:?}");
}

async fn finalize_promotes_when_asked_and_writes_events(store: Store) {
    let a = ready(&store, "p", true).await;
    let events = drain_outbox(&store).await;
    assert_eq!(events.iter().map(Event::topic).collect::<Vec<_>>(), ["deploy.ready", "deploy.promoted"]);
    let row = store.deployments().deployment(a.as_str()).await.unwrap().unwrap();
    assert!(row.is_production);
    let serving = store.serving_state().await.unwrap();
    assert_eq!(serving.production, vec![(project("p"), a)]);
}

async fn promote_and_rollback_walk_the_pointer(store: Store) {
    let a = ready(&store, "p", true).await;
    let b = ready(&store, "p", true).await;
    let c = ready(&store, "p", false).await;
    drain_outbox(&store).await;
    let list = store.deployments().ready_deployments(&project("p")).await.unwrap().unwrap();
    assert_eq!(list.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [c.clone(), b.clone(), a.clone()]);
    assert_eq!(list.iter().filter(|r| r.is_production).count(), 1);

    let (row, moved) = store.deployments().promote(c.as_str(), &audit(), 1).await.unwrap();
    assert!(moved.is_some() && row.is_production);
    let (_, moved) = store.deployments().promote(c.as_str(), &audit(), 2).await.unwrap();
    assert!(moved.is_none(), "promoting production again is a no-op");
    assert_eq!(drain_outbox(&store).await.len(), 1);

    // Default rollback: the newest earlier deployment that served production.
    let (row, _) = store.deployments().rollback(&project("p"), None, &audit(), 3).await.unwrap();
    assert_eq!(row.id, b);
    let (row, _) = store.deployments().rollback(&project("p"), None, &audit(), 4).await.unwrap();
    assert_eq!(row.id, a);
    assert!(matches!(
        store.deployments().rollback(&project("p"), None, &audit(), 5).await,
        Err(PointerError::NothingToRollBackTo(_))
    ));
    let (row, _) = store.deployments().rollback(&project("p"), Some(c.as_str()), &audit(), 6).await.unwrap();
    assert_eq!(row.id, c);
    let topics: Vec<_> = drain_outbox(&store).await.iter().map(|e| e.topic()).collect();
    assert_eq!(topics, ["deploy.rolled_back", "deploy.rolled_back", "deploy.rolled_back"]);
}

async fn rollback_errors(store: Store) {
    let a = ready(&store, "p", false).await;
    let other = ready(&store, "q", true).await;
    assert!(matches!(
        store.deployments().rollback(&project("zzz"), None, &audit(), 1).await,
        Err(PointerError::UnknownProject(_))
    ));
    assert!(matches!(
        store.deployments().rollback(&project("p"), None, &audit(), 1).await,
        Err(PointerError::NothingToRollBackTo(_))
    ));
    assert!(matches!(
        store.deployments().rollback(&project("p"), Some(other.as_str()), &audit(), 1).await,
        Err(PointerError::WrongProject { .. })
    ));
    assert!(matches!(
        store.deployments().rollback(&project("p"), Some("01jzzzzzzzzzzzzzzzzzzzzzzz"), &audit(), 1).await,
        Err(PointerError::UnknownDeployment(_))
    ));
    let (uploading, _) = create(&store, "p", &[("/x", b"x")], false).await;
    assert!(matches!(
        store.deployments().promote(uploading.as_str(), &audit(), 1).await,
        Err(PointerError::NotReady(_))
    ));
    assert!(store.deployments().promote(a.as_str(), &audit(), 1).await.is_ok());
}

async fn failed_and_abandoned_uploads_are_never_served(store: Store) {
    let (failed, _) = create(&store, "p", &[("/x", b"x")], true).await;
    store.deployments().fail_deployment(&failed, "too big").await.unwrap();
    assert!(matches!(
        store
            .deployments()
            .finalize(
                &failed,
                Ready { manifest: Digest::of(b"m"), total_bytes: 1, routes_json: "", alias: None },
                &audit(),
                1
            )
            .await
            .unwrap(),
        Finalized::NotUploading(Some(_))
    ));
    let (old, now) = create(&store, "p", &[("/y", b"y")], false).await;
    assert_eq!(store.abandon_uploads_before(now + 1).await.unwrap(), 1);
    assert_eq!(store.deployments().deployment(old.as_str()).await.unwrap().unwrap().state, DeploymentState::Error);
    assert!(store.serving_state().await.unwrap().deployments.is_empty());
    assert_eq!(store.live_references().await.unwrap(), (vec![], vec![]));
    assert!(drain_outbox(&store).await.is_empty());
}

async fn variants_round_trip(store: Store) {
    let (d, br, gz) = (Digest::of(b"d"), Digest::of(b"br"), Digest::of(b"gz"));
    store.put_variants(d, &[("br", br, 2), ("gzip", gz, 3)]).await.unwrap();
    store.put_variants(d, &[("gzip", gz, 3)]).await.unwrap();
    let mut v = store.variants(d).await.unwrap();
    v.sort();
    assert_eq!(v, vec![("br".into(), br, 2), ("gzip".into(), gz, 3)]);
    store.forget_variant(br).await.unwrap();
    assert_eq!(store.variants(d).await.unwrap(), vec![("gzip".into(), gz, 3)]);
}

async fn splits_replace_atomically(store: Store) {
    let a = ready(&store, "p", true).await;
    let b = ready(&store, "p", false).await;
    let other = ready(&store, "q", true).await;
    drain_outbox(&store).await;
    let seq = store
        .deployments()
        .set_split(&project("p"), &[(a.to_string(), 80), (b.to_string(), 20)], &audit(), 1)
        .await
        .unwrap();
    assert_eq!(seq, store.event_seq().await.unwrap());
    let mut got = store.deployments().split(&project("p")).await.unwrap();
    got.sort();
    let mut want = vec![(a.to_string(), 80), (b.to_string(), 20)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(store.serving_state().await.unwrap().splits.len(), 2);
    assert!(
        matches!(drain_outbox(&store).await.as_slice(), [Event::SplitChanged { variants, .. }] if variants.len() == 2)
    );
    // A bad entry changes nothing.
    assert!(matches!(
        store
            .deployments()
            .set_split(&project("p"), &[(a.to_string(), 50), (other.to_string(), 50)], &audit(), 2)
            .await,
        Err(PointerError::WrongProject { .. })
    ));
    assert_eq!(store.deployments().split(&project("p")).await.unwrap().len(), 2);
    assert!(drain_outbox(&store).await.is_empty());
    store.deployments().set_split(&project("p"), &[], &audit(), 3).await.unwrap();
    assert!(store.deployments().split(&project("p")).await.unwrap().is_empty());
    assert!(
        matches!(drain_outbox(&store).await.as_slice(), [Event::SplitChanged { variants, .. }] if variants.is_empty())
    );
}

async fn links_find_projects_by_repository(store: Store) {
    let link = |p: &'static str, key: &'static str, cred: Option<&'static str>| NewLink {
        project: Box::leak(Box::new(project(p))),
        repo_url: "https://git.example.com/me/app.git",
        repo_key: key,
        production_branch: "main",
        webhook_secret: "whsec_first",
        git_credential_sealed: cred,
        status_api: None,
        org_id: "default",
        audit: Box::leak(Box::new(audit())),
        now_ms: 1,
    };
    let a = store.builds().link_project(link("a", "git.example.com/me/app", Some("sealed"))).await.unwrap();
    assert_eq!(a.webhook_secret, "whsec_first");
    store.builds().link_project(link("b", "git.example.com/me/app", None)).await.unwrap();
    store.builds().link_project(link("c", "git.example.com/me/other", None)).await.unwrap();
    let found: Vec<String> =
        store.builds().links_by_repo("git.example.com/me/app").await.unwrap().into_iter().map(|l| l.project).collect();
    assert_eq!(found, ["a", "b"]);
    // Relinking keeps the secret the host has and a credential not replaced.
    let again = NewLink {
        webhook_secret: "whsec_second",
        production_branch: "trunk",
        status_api: Some("https://git.example.com/api/v4"),
        ..link("a", "git.example.com/me/app", None)
    };
    let a = store.builds().link_project(again).await.unwrap();
    assert_eq!((a.webhook_secret.as_str(), a.production_branch.as_str()), ("whsec_first", "trunk"));
    assert_eq!(a.git_credential_sealed.as_deref(), Some("sealed"));
    assert_eq!(a.status_api.as_deref(), Some("https://git.example.com/api/v4"));
}

fn new_build<'a>(id: &'a str, p: &'a ProjectName, branch: &'a str, context: &'a BuildContext) -> NewBuild<'a> {
    NewBuild { id, project: p, trigger: "github", branch, commit: None, context, job_json: "{}", now_ms: 10 }
}

async fn the_build_queue_leases_supersedes_and_dedups(store: Store) {
    // Build ids are ULIDs, as the control plane makes them.
    const B1: &str = "01h00000000000000000000b01";
    const B2: &str = "01h00000000000000000000b02";
    const B3: &str = "01h00000000000000000000b03";
    const B9: &str = "01h00000000000000000000b09";
    let p = project("site");
    store
        .builds()
        .link_project(NewLink {
            project: &p,
            repo_url: "file:///r.git",
            repo_key: "file/r",
            production_branch: "main",
            webhook_secret: "s",
            git_credential_sealed: None,
            status_api: None,
            org_id: "default",
            audit: &audit(),
            now_ms: 1,
        })
        .await
        .unwrap();
    let prod = BuildContext::Production;
    let q = store.builds().queue_builds(Some(("github", "d1")), &[new_build(B1, &p, "main", &prod)], 10).await.unwrap();
    assert_eq!(q, Queued::New { canceled: vec![] });
    // The same delivery again queues nothing and names the first build.
    let q = store.builds().queue_builds(Some(("github", "d1")), &[new_build(B9, &p, "main", &prod)], 11).await.unwrap();
    assert_eq!(q, Queued::Duplicate { builds: vec![B1.into()] });
    assert!(store.builds().build(B9).await.unwrap().is_none());
    store.builds().note_commit_status(B1, "github pending: posted (201)").await.unwrap();
    let b1 = store.builds().build(B1).await.unwrap().unwrap();
    assert_eq!(b1.commit_status.as_deref(), Some("github pending: posted (201)"));

    // A worker claims it; no one else can while the lease holds.
    let (id, _, attempt) = store.builds().claim_build(1_000, 3, 100).await.unwrap().unwrap();
    assert_eq!((id.as_str(), attempt), (B1, 1));
    assert!(store.builds().claim_build(1_000, 3, 200).await.unwrap().is_none());
    assert!(store.builds().extend_build_lease(B1, 1, 2_000).await.unwrap());
    // The lease runs out: another worker takes it, as attempt 2; the first
    // worker's attempt is fenced off.
    let (id, _, attempt) = store.builds().claim_build(1_000, 3, 2_001).await.unwrap().unwrap();
    assert_eq!((id.as_str(), attempt), (B1, 2));
    assert!(!store.builds().extend_build_lease(B1, 1, 9_000).await.unwrap(), "attempt 1 was taken over");
    let stale = BuildEnd {
        state: BuildState::Ready,
        deployment_id: Some("d"),
        error: None,
        failed_step: None,
        exit_status: None,
        now_ms: 2_002,
    };
    store.builds().finish_build(B1, 1, stale).await.unwrap();
    assert_eq!(
        store.builds().build(B1).await.unwrap().unwrap().state,
        BuildState::Building,
        "a stale finish changes nothing"
    );

    // A newer build of the branch cancels it; a pull request's does not.
    let pr = BuildContext::PullRequest { number: 4, fork: false };
    store.builds().queue_builds(None, &[new_build(B2, &p, "feature", &pr)], 12).await.unwrap();
    let q = store.builds().queue_builds(None, &[new_build(B3, &p, "main", &prod)], 13).await.unwrap();
    assert_eq!(q, Queued::New { canceled: vec![B1.into()] });
    assert_eq!(store.builds().build(B1).await.unwrap().unwrap().state, BuildState::Canceled);
    assert!(!store.builds().extend_build_lease(B1, 2, 9_999).await.unwrap(), "a canceled build's worker stops");
    assert_eq!(store.builds().build(B2).await.unwrap().unwrap().state, BuildState::Queued);

    // Infrastructure failures requeue until the attempts run out.
    let (id, _, attempt) = store.builds().claim_build(1_000, 3, 3_000).await.unwrap().unwrap();
    assert_eq!((id.as_str(), attempt), (B2, 1), "oldest first");
    assert!(store.builds().requeue_build(B2, 1, "registry down", 3, 3_001).await.unwrap());
    let (id, _, attempt) = store.builds().claim_build(1_000, 3, 3_002).await.unwrap().unwrap();
    assert_eq!((id.as_str(), attempt), (B2, 2));
    let (id, _, _) = store.builds().claim_build(1_000, 3, 3_003).await.unwrap().unwrap();
    assert_eq!(id, B3);
    let end = BuildEnd {
        state: BuildState::Error,
        deployment_id: None,
        error: Some("exit 2"),
        failed_step: Some("build"),
        exit_status: Some(2),
        now_ms: 3_004,
    };
    store.builds().finish_build(B3, 1, end).await.unwrap();
    let b3 = store.builds().build(B3).await.unwrap().unwrap();
    assert_eq!((b3.state, b3.failed_step.as_deref(), b3.exit_status), (BuildState::Error, Some("build"), Some(2)));
    let failed = store.deployments().deployment(b3.deployment_id.as_deref().unwrap()).await.unwrap().unwrap();
    assert_eq!(failed.state, helix_core::api::DeploymentState::Error, "the failed build's deployment is in error");
    assert!(!store.builds().cancel_build(B3, 3_005).await.unwrap(), "a finished build cannot be canceled");

    // A build whose workers keep vanishing is given up at the limit.
    let (id, _, attempt) = store.builds().claim_build(1_000, 3, 10_000).await.unwrap().unwrap();
    assert_eq!((id.as_str(), attempt), (B2, 3), "b2's lease ran out");
    assert!(store.builds().claim_build(1_000, 3, 20_000).await.unwrap().is_none());
    let b2 = store.builds().build(B2).await.unwrap().unwrap();
    assert_eq!(b2.state, BuildState::Error);
    assert!(b2.error.unwrap().contains("gave up after 3 attempts"));

    // Logs append in order and restart with a new attempt.
    store.builds().append_build_log(B2, &[(1, 5, "one".into()), (2, 6, "two".into())], 8, false).await.unwrap();
    store.builds().append_build_log(B2, &[(3, 7, "three".into())], 14, true).await.unwrap();
    let lines: Vec<String> = store.builds().build_log(B2, 1, 10).await.unwrap().into_iter().map(|l| l.2).collect();
    assert_eq!(lines, ["two", "three"]);
    let b2 = store.builds().build(B2).await.unwrap().unwrap();
    assert_eq!((b2.log_lines, b2.log_bytes, b2.log_truncated), (3, 14, true));
    assert_eq!(store.builds().build_log_end(B2).await.unwrap(), 3, "a new attempt's lines follow these");
    assert_eq!(store.builds().build_log_end(B3).await.unwrap(), 0);
    assert_eq!(
        store.builds().builds(&p, 10).await.unwrap().iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        [B3, B2, B1]
    );
}

async fn aliases_point_at_finalized_deployments(store: Store) {
    let (id, now) = create(&store, "site", &[("/a", b"a")], false).await;
    let Finalized::Now(..) = store
        .deployments()
        .finalize(
            &id,
            Ready { manifest: Digest::of(b"m"), total_bytes: 1, routes_json: "", alias: Some("feature-x") },
            &audit(),
            now + 1,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let events = drain_outbox(&store).await;
    assert!(
        events.iter().any(
            |e| matches!(e, Event::AliasSet { alias, deployment, .. } if alias == "feature-x" && *deployment == id)
        ),
        "{events:?}"
    );
    let (id2, now) = create(&store, "site", &[("/a", b"b")], false).await;
    store
        .deployments()
        .finalize(
            &id2,
            Ready { manifest: Digest::of(b"m2"), total_bytes: 1, routes_json: "", alias: Some("feature-x") },
            &audit(),
            now + 1,
        )
        .await
        .unwrap();
    let state = store.serving_state().await.unwrap();
    assert_eq!(state.aliases, vec![(project("site"), "feature-x".to_owned(), id2)]);
    drain_outbox(&store).await;
    assert!(store.builds().remove_alias(&project("site"), "feature-x", now + 2).await.unwrap().is_some());
    assert!(
        store.builds().remove_alias(&project("site"), "feature-x", now + 3).await.unwrap().is_none(),
        "gone already"
    );
    assert!(store.serving_state().await.unwrap().aliases.is_empty());
    let events = drain_outbox(&store).await;
    assert_eq!(events, vec![Event::AliasRemoved { project: project("site"), alias: "feature-x".into() }]);
}

async fn a_cron_slot_is_claimed_once(store: Store) {
    let id = ready(&store, "cronp", true).await;
    let p = project("cronp");
    let production = store.crons().production_manifests().await.unwrap();
    assert_eq!(production.iter().map(|(p, d, _)| (p.as_str(), d.clone())).collect::<Vec<_>>(), [("cronp", id.clone())]);
    // Two servers race for the same minute: one wins.
    let crons = store.crons();
    let (a, b) = tokio::join!(
        crons.claim_cron_run(&p, "/api/tick", 60_000, &id, 1),
        crons.claim_cron_run(&p, "/api/tick", 60_000, &id, 2)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one claim lands");
    assert!(store.crons().claim_cron_run(&p, "/api/tick", 120_000, &id, 3).await.unwrap(), "the next minute is free");
    store.crons().finish_cron_run(&p, "/api/tick", 60_000, true, "GET /api/tick → 200", 5).await.unwrap();
    let runs = store.crons().cron_runs(&p, 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.slot_ms, r.status.as_str())).collect::<Vec<_>>(),
        [(120_000, "running"), (60_000, "ok")]
    );
    assert_eq!(runs[1].finished_at_ms, Some(5));
}

async fn function_logs_are_read_after_a_cursor(store: Store) {
    let line = |text: &'static str, function: &'static str| helix_store::NewFunctionLog {
        project: "logs",
        deployment: "d1",
        function,
        request_id: "r1",
        stream: "stdout",
        line: text,
        at_ms: 1000,
    };
    store
        .function_logs()
        .append_function_logs(&[line("one", "a"), line("two", "b"), line("three", "a")])
        .await
        .unwrap();
    let all = store.function_logs().function_logs("logs", None, None, None, 10).await.unwrap();
    assert_eq!(all.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
    let newest = store.function_logs().function_logs("logs", None, None, None, 2).await.unwrap();
    assert_eq!(newest.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["two", "three"]);
    let after = store.function_logs().function_logs("logs", Some("a"), None, Some(&all[0].id), 10).await.unwrap();
    assert_eq!(after.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["three"]);
    assert!(store.function_logs().function_logs("other", None, None, None, 10).await.unwrap().is_empty());
    assert_eq!(store.function_logs().prune_function_logs(1001).await.unwrap(), 3);
}

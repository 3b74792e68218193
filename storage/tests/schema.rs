//! The owlbear schema against a real Postgres: migrations, the server's
//! statements, Postgres' own errors, and the catalogue evidence.

use lab_testkit::TestPostgres;
use mythical_storage::catalogue::{self, ConstraintKind};
use mythical_storage::{Beast, DbConfig, StorageError, Store};

fn store_for(pg: &TestPostgres) -> Store {
    Store::connect_lazy(&DbConfig {
        host: pg.host().into(),
        port: pg.port(),
        ..DbConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_create_every_beast_table_once() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let stores: Vec<Store> = (0..4).map(|_| store_for(&pg)).collect();
    let handles: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.migrate().await }))
        .collect();
    for handle in handles {
        handle
            .await
            .unwrap()
            .expect("every concurrent migration succeeds");
    }
    // And again, as a restarted server would.
    stores[0]
        .migrate()
        .await
        .expect("migrating twice is a no-op");
    let tables = pg
        .psql("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'")
        .unwrap();
    assert_eq!(tables, "beholder,illithid,manticore,owlbear,unicorn");
    assert_eq!(
        pg.psql("SELECT count(*) FROM _sqlx_migrations").unwrap(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_insert_keeps_postgres_own_error() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let store = store_for(&pg);
    store.migrate().await.unwrap();

    let err = store.insert(Beast::Owlbear, None).await.unwrap_err();
    let db = err.db_error().expect("a Postgres error");
    assert_eq!(
        db.message,
        r#"null value in column "name" of relation "owlbear" violates not-null constraint"#
    );
    assert_eq!(db.sqlstate, "23502");
    assert_eq!(db.table.as_deref(), Some("owlbear"));
    assert_eq!(db.column.as_deref(), Some("name"));
    assert!(
        db.detail
            .as_deref()
            .unwrap()
            .starts_with("Failing row contains (")
    );
    assert_eq!(
        err.to_string(),
        db.message,
        "Display is the message, no `at line N`"
    );

    store
        .insert(Beast::Owlbear, Some("red_John_lion"))
        .await
        .unwrap();
    let dup = store
        .insert(Beast::Owlbear, Some("red_John_lion"))
        .await
        .unwrap_err();
    let db = dup.db_error().unwrap();
    assert_eq!(db.sqlstate, "23505");
    assert_eq!(db.constraint.as_deref(), Some("owlbear_name_key"));

    let long = "x".repeat(51);
    let too_long = store.insert(Beast::Owlbear, Some(&long)).await.unwrap_err();
    assert_eq!(too_long.sqlstate(), Some("22001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_insert_delete_round_trip() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let store = store_for(&pg);
    store.migrate().await.unwrap();
    for name in ["a", "b", "c"] {
        store.insert(Beast::Unicorn, Some(name)).await.unwrap();
    }
    let mut names = store.list_names(Beast::Unicorn).await.unwrap();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(store.delete(Beast::Unicorn, Some("b")).await.unwrap(), 1);
    assert_eq!(store.delete(Beast::Unicorn, Some("zzz")).await.unwrap(), 0);
    assert_eq!(store.delete(Beast::Unicorn, None).await.unwrap(), 0);
    assert_eq!(
        catalogue::row_count(store.pool(), Beast::Unicorn)
            .await
            .unwrap(),
        2
    );
    assert!(store.list_names(Beast::Beholder).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_says_owlbear_name_is_not_nullable_and_unique() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let store = store_for(&pg);
    store.migrate().await.unwrap();
    let info = catalogue::column_info(store.pool(), "owlbear", "name")
        .await
        .unwrap()
        .expect("owlbear.name exists");
    assert!(!info.is_nullable);
    assert_eq!(info.data_type, "character varying");
    assert_eq!(info.max_length, Some(50));
    let unique = info
        .constraints
        .iter()
        .find(|c| c.kind == ConstraintKind::Unique)
        .expect("a unique constraint");
    assert_eq!(unique.name, "owlbear_name_key");
    assert_eq!(unique.definition, "UNIQUE (name)");

    let id = catalogue::column_info(store.pool(), "owlbear", "id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id.constraints[0].kind, ConstraintKind::PrimaryKey);
    assert!(
        catalogue::column_info(store.pool(), "owlbear", "nope")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tables_fail_until_recreated() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let store = store_for(&pg);
    store.migrate().await.unwrap();
    store.insert(Beast::Illithid, Some("gone")).await.unwrap();
    store.drop_tables().await.unwrap();
    let err = store.list_names(Beast::Illithid).await.unwrap_err();
    assert_eq!(err.to_string(), r#"relation "illithid" does not exist"#);
    assert_eq!(err.sqlstate(), Some("42P01"));
    store.create_tables().await.unwrap();
    assert!(store.list_names(Beast::Illithid).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_unavailable_not_a_panic() {
    let port = lab_testkit::free_port();
    let store = Store::connect_lazy(&DbConfig {
        host: "127.0.0.1".into(),
        port,
        acquire_timeout: std::time::Duration::from_millis(500),
        ..DbConfig::default()
    });
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}

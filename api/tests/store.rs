//! The state store on both databases, through the same test bodies: SQLite in a temp dir, and
//! PostgreSQL (Debian's, started by `scripts/postgres.sh`). `HOGPIPE_TEST_PG_URL` (set by
//! `scripts/test.sh`) names a running server; unset, the first PostgreSQL test starts one of this
//! process's own (stopped when the process exits), and the tests skip with a loud message only
//! when that is impossible and neither the variable nor `CI=true` is set. Every test gets its own
//! database (`hogpipe_store_<pid>_<n>_<nanos>`), dropped at the end.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::Engine as _;
use hogpipe_api::store::{
    FunctionLog, HogFunction, MetricDelta, Principal, ProjectSeed, Store, StoreConfig, StoreError, StoredAggregate,
};
use serde_json::{json, Map, Value};
use sha2::Digest as _;

/// The API shares one store between request handlers.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
};

const URL_VAR: &str = "HOGPIPE_TEST_PG_URL";

fn script() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../scripts/postgres.sh")
}

/// The base URL of the PostgreSQL server every test of this process uses, or None to skip.
fn server() -> Option<&'static str> {
    static SERVER: OnceLock<Option<String>> = OnceLock::new();
    SERVER.get_or_init(start_server).as_deref()
}

fn start_server() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR) {
        if !url.is_empty() {
            return Some(url);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir").keep();
    // The server may run as another user (`postgres` when we are root): let it in.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let pg_dir = dir.join("pg");
    let output = Command::new("bash")
        .arg(script())
        .args(["start", "hogpipe_store"])
        .env("HOGPIPE_PG_DIR", &pg_dir)
        .env_remove("HOGPIPE_PG_PORT")
        .output()
        .expect("run scripts/postgres.sh");
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("scripts/postgres.sh could not start a server (CI=true never skips): {why}");
        }
        eprintln!(
            "\n!!!!!!!!!!\n!!! SKIPPED the PostgreSQL store tests: scripts/postgres.sh failed:\n{why}\n\
             !!! scripts/test.sh installs PostgreSQL and never skips.\n!!!!!!!!!!\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    // Statics are never dropped: a watcher stops the server once this process is gone.
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash {script} stop; rm -rf {dir}",
        pid = std::process::id(),
        script = shell_quote(&script().display().to_string()),
        dir = shell_quote(&dir.display().to_string()),
    );
    // Started in the background by a shell that exits at once: the watcher belongs to init.
    let status = Command::new("sh")
        .args(["-c", &format!("setsid sh -c {} &", shell_quote(&watcher))])
        .env("HOGPIPE_PG_DIR", &pg_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the server's watcher");
    assert!(status.success(), "starting the server's watcher: {status}");
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `url` with another database.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').expect("the URL names a database");
    format!("{server}/{db}{query}")
}

/// One test's database: a SQLite file in a temp dir, or a fresh PostgreSQL database. The data dir
/// (secret key) is a temp dir either way.
struct Backend {
    dir: tempfile::TempDir,
    /// PostgreSQL: the server's URL and this test's database.
    postgres: Option<(String, String)>,
}

impl Backend {
    fn sqlite() -> Backend {
        Backend { dir: tempfile::tempdir().expect("tempdir"), postgres: None }
    }

    fn postgres() -> Option<Backend> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = server()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let db = format!("hogpipe_store_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = ::postgres::Client::connect(server, ::postgres::NoTls).expect("connect to the test server");
        admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).expect("create the test database");
        Some(Backend { dir: tempfile::tempdir().expect("tempdir"), postgres: Some((server.to_string(), db)) })
    }

    fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    fn url(&self) -> Option<String> {
        self.postgres.as_ref().map(|(server, db)| with_database(server, db))
    }

    fn config(&self, secret_key: Option<&str>) -> StoreConfig {
        StoreConfig { url: self.url(), path: None, secret_key: secret_key.map(str::to_string) }
    }

    fn try_open(&self, secret_key: Option<&str>) -> Result<Store, StoreError> {
        Store::open(&self.config(secret_key), self.dir.path())
    }

    /// The store, with the key generated into the data dir.
    fn open(&self) -> Store {
        self.try_open(None).expect("open the store")
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("state.sqlite")
    }

    fn pg(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url().expect("postgres"), ::postgres::NoTls).expect("connect")
    }

    /// Runs a statement behind the store's back.
    fn exec(&self, sql: &str) {
        if self.is_postgres() {
            self.pg().batch_execute(sql).expect(sql);
        } else {
            rusqlite::Connection::open(self.sqlite_path()).expect("open sqlite").execute_batch(sql).expect(sql);
        }
    }

    /// The first column of a query's rows, as text.
    fn column(&self, sql: &str) -> Vec<String> {
        if self.is_postgres() {
            let sql = format!("SELECT CAST(c AS TEXT) FROM ({sql}) AS q(c)");
            self.pg().query(&sql, &[]).expect("query").iter().map(|row| row.get::<_, String>(0)).collect()
        } else {
            let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open sqlite");
            let mut statement = conn.prepare(sql).expect(sql);
            let rows = statement
                .query_map([], |row| {
                    Ok(match row.get::<_, rusqlite::types::Value>(0)? {
                        rusqlite::types::Value::Integer(v) => v.to_string(),
                        rusqlite::types::Value::Text(v) => v,
                        other => format!("{other:?}"),
                    })
                })
                .expect(sql);
            rows.map(|r| r.expect("row")).collect()
        }
    }

    /// Everything the database holds, as text: every row of every table, and for SQLite also the
    /// raw bytes of the database file and its WAL (lossy UTF-8).
    fn raw(&self) -> String {
        let tables = [
            "projects",
            "api_keys",
            "api_key_projects",
            "hog_functions",
            "function_logs",
            "function_metrics",
            "live_aggregates",
            "hogpipe_state_migrations",
        ];
        let mut out = String::new();
        if self.is_postgres() {
            let mut client = self.pg();
            for table in tables {
                for row in client.query(&format!("SELECT CAST(t AS TEXT) FROM {table} t"), &[]).expect(table) {
                    out.push_str(&row.get::<_, String>(0));
                    out.push('\n');
                }
            }
        } else {
            let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open sqlite");
            for table in tables {
                let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).expect(table);
                let columns = statement.column_count();
                let mut rows = statement.query([]).expect(table);
                while let Some(row) = rows.next().expect("row") {
                    for index in 0..columns {
                        let value: rusqlite::types::Value = row.get(index).expect("value");
                        out.push_str(&format!("{value:?} "));
                    }
                    out.push('\n');
                }
            }
            for suffix in ["", "-wal"] {
                let mut path = self.sqlite_path().into_os_string();
                path.push(suffix);
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        out
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((server, db)) = &self.postgres {
            if let Ok(mut admin) = ::postgres::Client::connect(server, ::postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
            }
        }
    }
}

/// Each case as one test on SQLite and one on PostgreSQL.
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $case() {
                super::$case(&super::Backend::sqlite());
            })*
        }
        mod postgres {
            $(#[test]
            fn $case() {
                if let Some(backend) = super::Backend::postgres() {
                    super::$case(&backend);
                }
            })*
        }
    };
}

both!(
    migrations_apply_once,
    sync_projects_is_idempotent_and_updates,
    sync_projects_token_conflicts_change_nothing,
    create_project_takes_the_next_id,
    api_keys_authenticate_by_hash,
    nothing_secret_is_stored_in_plain_text,
    secret_inputs_round_trip_and_need_the_right_key,
    functions_crud_and_order,
    logs_are_trimmed_and_paged,
    metrics_accumulate,
    aggregates_crud,
);

fn seed(id: u64, name: &str, token: &str, keys: &[&str]) -> ProjectSeed {
    ProjectSeed { id, name: name.into(), token: token.into(), api_keys: keys.iter().map(|k| k.to_string()).collect() }
}

/// (id, name, token) of every project.
fn project_list(store: &Store) -> Vec<(u64, String, String)> {
    store.projects().expect("projects").into_iter().map(|p| (p.id, p.name, p.token)).collect()
}

fn owned(items: &[(u64, &str, &str)]) -> Vec<(u64, String, String)> {
    items.iter().map(|(id, name, token)| (*id, name.to_string(), token.to_string())).collect()
}

fn migrations_apply_once(backend: &Backend) {
    let store = backend.open();
    assert_eq!(backend.column("SELECT version FROM hogpipe_state_migrations"), ["1"]);
    store.create_project("Kept", "phc_kept").expect("create");
    drop(store);
    let again = backend.open();
    assert_eq!(backend.column("SELECT version FROM hogpipe_state_migrations"), ["1"]);
    assert_eq!(project_list(&again), owned(&[(1, "Kept", "phc_kept")]));
    // Two stores open at once on the same database also agree.
    let third = backend.open();
    assert_eq!(project_list(&third), project_list(&again));
    assert!(again.describe().starts_with(if backend.is_postgres() { "postgres " } else { "sqlite " }));
}

fn sync_projects_is_idempotent_and_updates(backend: &Backend) {
    let store = backend.open();
    let outside =
        store.add_api_key("phx_outside_key_0000000000", "by hand", &[7], &["query:read".into()]).expect("add");
    let seeds = [
        seed(1, "One", "phc_one", &["phx_key_shared_000000000000"]),
        seed(2, "Two", "phc_two", &["phx_key_shared_000000000000", "phx_key_two_0000000000000000"]),
    ];
    store.sync_projects(&seeds).expect("sync");
    store.sync_projects(&seeds).expect("sync again");
    assert_eq!(project_list(&store), owned(&[(1, "One", "phc_one"), (2, "Two", "phc_two")]));
    let keys = store.api_keys().expect("keys");
    assert_eq!(keys.len(), 3, "{keys:?}");
    let from_file: Vec<_> = keys.iter().filter(|k| k.label == "hogpipe.toml").collect();
    assert_eq!(from_file.len(), 2);
    assert!(from_file.iter().all(|k| k.scopes == ["*"]));
    let shared = store.authenticate("phx_key_shared_000000000000").expect("auth").expect("known");
    assert_eq!(shared.projects, [1, 2]);
    assert_eq!(shared.scopes, ["*"]);
    assert_eq!(store.authenticate("phx_key_two_0000000000000000").expect("auth").expect("known").projects, [2]);
    let created = store.project(1).expect("project").expect("exists").created_at;

    // Names change, tokens swap between the listed projects, a key is added; the rest stays.
    let other = store.create_project("Three", "phc_three").expect("create");
    assert_eq!(other.id, 3);
    store
        .sync_projects(&[
            seed(1, "One renamed", "phc_two", &["phx_key_shared_000000000000", "phx_key_new_00000000000000000"]),
            seed(2, "Two", "phc_one", &[]),
        ])
        .expect("sync with changes");
    assert_eq!(
        project_list(&store),
        owned(&[(1, "One renamed", "phc_two"), (2, "Two", "phc_one"), (3, "Three", "phc_three")])
    );
    assert_eq!(store.project(1).expect("project").expect("exists").created_at, created);
    assert_eq!(store.api_keys().expect("keys").len(), 4);
    assert_eq!(store.authenticate("phx_key_new_00000000000000000").expect("auth").expect("known").projects, [1]);
    // Keys not listed any more keep working: sync only adds.
    assert_eq!(store.authenticate("phx_key_two_0000000000000000").expect("auth").expect("known").projects, [2]);
    assert_eq!(store.authenticate("phx_outside_key_0000000000").expect("auth").expect("known").key_id, outside.id);
}

fn sync_projects_token_conflicts_change_nothing(backend: &Backend) {
    let store = backend.open();
    store.sync_projects(&[seed(1, "One", "phc_one", &[])]).expect("sync");
    let other = store.create_project("Other", "phc_other").expect("create");
    let taken = store.sync_projects(&[seed(1, "One renamed", "phc_other", &["phx_never_stored_000000000"])]);
    match taken {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains(&format!("project {}", other.id)), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let twice = store.sync_projects(&[seed(1, "One", "phc_same", &[]), seed(5, "Five", "phc_same", &[])]);
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    // All or nothing: neither attempt left a trace.
    assert_eq!(project_list(&store), owned(&[(1, "One", "phc_one"), (2, "Other", "phc_other")]));
    assert_eq!(store.authenticate("phx_never_stored_000000000").expect("auth"), None);
}

fn create_project_takes_the_next_id(backend: &Backend) {
    let store = backend.open();
    let first = store.create_project("First", "phc_first").expect("create");
    assert_eq!((first.id, first.name.as_str(), first.token.as_str()), (1, "First", "phc_first"));
    assert!(chrono::DateTime::parse_from_rfc3339(&first.created_at).is_ok(), "{}", first.created_at);
    store.sync_projects(&[seed(10, "Ten", "phc_ten", &[])]).expect("sync");
    assert_eq!(store.create_project("Next", "phc_next").expect("create").id, 11);
    match store.create_project("Dup", "phc_first") {
        Err(StoreError::Conflict(message)) => assert!(message.contains("project 1"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.project(1).expect("project"), Some(first));
    assert_eq!(store.project(2).expect("project"), None);
    assert_eq!(project_list(&store).len(), 3);
}

fn api_keys_authenticate_by_hash(backend: &Backend) {
    let store = backend.open();
    let plaintext = "phx_abcdefghijklmnopqrstuvwxyz0123456789wxyz";
    let scopes = vec!["query:read".to_string(), "hog_function:write".to_string()];
    let info = store.add_api_key(plaintext, "ci", &[3, 1], &scopes).expect("add");
    assert_eq!(info.mask, "phx_ab…wxyz");
    assert_eq!(info.label, "ci");
    assert_eq!(info.projects, [1, 3]);
    assert_eq!(info.scopes, scopes);
    assert!(uuid::Uuid::try_parse(&info.id).is_ok());
    assert_eq!(store.api_keys().expect("keys"), std::slice::from_ref(&info));

    let principal = store.authenticate(plaintext).expect("auth").expect("known");
    assert_eq!(principal, Principal { key_id: info.id.clone(), projects: vec![1, 3], scopes: scopes.clone() });
    assert!(principal.has_scope("query:read"));
    assert!(principal.has_scope("hog_function:read"), "write implies read");
    assert!(principal.has_scope("hog_function:write"));
    assert!(!principal.has_scope("query:write"));
    assert!(!principal.has_scope("live:read"));
    assert!(!principal.has_scope("dead_letter:write"));

    assert_eq!(store.authenticate("phx_abcdefghijklmnopqrstuvwxyz0123456789wxyZ").expect("auth"), None);
    assert_eq!(store.authenticate("").expect("auth"), None);
    assert!(matches!(store.add_api_key(plaintext, "again", &[1], &scopes), Err(StoreError::Conflict(_))));

    let everything = store.add_api_key("phx_all_0000000000000000000000", "all", &[2], &["*".into()]).expect("add");
    let all = store.authenticate("phx_all_0000000000000000000000").expect("auth").expect("known");
    assert!(all.has_scope("dead_letter:write") && all.has_scope("project:read"));
    assert_eq!(store.api_keys().expect("keys").len(), 2);

    assert!(store.delete_api_key(&info.id).expect("delete"));
    assert!(!store.delete_api_key(&info.id).expect("delete again"));
    assert_eq!(store.authenticate(plaintext).expect("auth"), None);
    assert_eq!(store.api_keys().expect("keys"), [everything]);
    assert_eq!(backend.column("SELECT project_id FROM api_key_projects"), ["2"]);
}

/// A function with one plain and one secret input.
fn function(id: &str, project_id: u64, order: i32, created_at: &str) -> HogFunction {
    let mut inputs = Map::new();
    inputs.insert("url".into(), json!({"value": format!("https://hooks.example.com/{id}")}));
    inputs.insert(
        "token".into(),
        json!({"value": format!("TOPSECRET-{id}"), "bytecode": ["_H", 1, 32, format!("TOPSECRET-{id}")]}),
    );
    HogFunction {
        id: id.into(),
        project_id,
        kind: "destination".into(),
        name: format!("function {id}"),
        description: "posts events".into(),
        enabled: true,
        template_id: Some("template-webhook".into()),
        hog: "fetch(inputs.url, {'headers': {'auth': inputs.token}})".into(),
        bytecode: json!(["_H", 1, 32, "url"]),
        inputs_schema: json!([
            {"key": "url", "type": "string", "label": "URL", "required": true},
            {"key": "token", "type": "string", "label": "Token", "secret": true},
        ]),
        inputs,
        filters: json!({"events": [{"id": "$pageview", "type": "events"}]}),
        execution_order: order,
        created_at: created_at.into(),
        updated_at: created_at.into(),
    }
}

fn nothing_secret_is_stored_in_plain_text(backend: &Backend) {
    let store = backend.open();
    let plaintext = "phx_PLAINTEXTKEY_never_in_the_database_1234";
    store.add_api_key(plaintext, "k", &[1], &["*".into()]).expect("add");
    store.sync_projects(&[seed(1, "One", "phc_one", &["phx_SEEDKEY_never_in_the_database_5678"])]).expect("sync");
    let f = function("f-secret", 1, 0, "2026-11-25T10:00:00.000Z");
    store.save_function(&f).expect("save");
    // Also after an update.
    store.save_function(&HogFunction { name: "renamed".into(), ..f }).expect("save again");
    drop(store);

    let raw = backend.raw();
    let hash: String = sha2::Sha256::digest(plaintext.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert!(raw.contains(&hash), "the hash of the key is what is stored");
    assert!(raw.contains("https://hooks.example.com/f-secret"), "the dump shows plain inputs");
    for secret in ["PLAINTEXTKEY", "SEEDKEY", "TOPSECRET"] {
        assert!(!raw.contains(secret), "{secret} is stored in plain text");
    }
    let inputs: Value =
        serde_json::from_str(&backend.column("SELECT inputs FROM hog_functions")[0]).expect("inputs are JSON");
    let sealed = inputs["token"]["secret"].as_str().expect("the secret input is sealed");
    let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).expect("base64");
    assert!(bytes.len() > 12 + 16, "nonce, ciphertext and tag");
    assert_eq!(inputs["token"].as_object().map(Map::len), Some(1));
    assert_eq!(inputs["url"], json!({"value": "https://hooks.example.com/f-secret"}));
}

fn secret_inputs_round_trip_and_need_the_right_key(backend: &Backend) {
    let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let (right, wrong) = (b64(7), b64(8));
    let store = backend.try_open(Some(&right)).expect("open with a configured key");
    let one = function("f-one", 1, 0, "2026-11-25T10:00:00.000Z");
    let two = function("f-two", 1, 1, "2026-11-25T10:00:00.000Z");
    store.save_function(&one).expect("save");
    store.save_function(&two).expect("save");
    assert_eq!(store.function(1, "f-one").expect("read"), Some(one.clone()));
    drop(store);
    assert!(!backend.dir.path().join("secret.key").exists(), "a configured key is not written down");

    let wrong_store = backend.try_open(Some(&wrong)).expect("open with another key");
    for result in [wrong_store.function(1, "f-one").map(|_| ()), wrong_store.functions(None).map(|_| ())] {
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("secret inputs cannot be opened: wrong secret key?"), "{message}")
            }
            other => panic!("expected a wrong-key error, got {other:?}"),
        }
    }
    drop(wrong_store);
    match backend.try_open(Some("c2hvcnQ=")) {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("32 bytes"), "{message}"),
        other => panic!("expected a bad-key error, got {:?}", other.map(|_| ())),
    }

    // A sealed value copied to another function does not open there.
    backend.exec(
        "UPDATE hog_functions SET inputs = (SELECT inputs FROM hog_functions WHERE id = 'f-one') WHERE id = 'f-two'",
    );
    let store = backend.try_open(Some(&right)).expect("open with the right key");
    assert_eq!(store.function(1, "f-one").expect("read"), Some(one));
    assert!(matches!(store.function(1, "f-two"), Err(StoreError::Corrupt(_))));

    // Without a configured key, one is generated into the data dir (0600) and used again.
    let dir_backend = Backend { dir: tempfile::tempdir().expect("tempdir"), postgres: None };
    let generated = dir_backend.open();
    let three = function("f-three", 2, 0, "2026-11-25T11:00:00.000Z");
    generated.save_function(&three).expect("save");
    drop(generated);
    let key_file = dir_backend.dir.path().join("secret.key");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).expect("key file").permissions().mode() & 0o777, 0o600);
    }
    let key = std::fs::read_to_string(&key_file).expect("read the key");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(key.trim()).expect("base64").len(), 32);
    assert_eq!(dir_backend.open().function(2, "f-three").expect("read"), Some(three));
}

fn functions_crud_and_order(backend: &Backend) {
    let store = backend.open();
    let a = function("a", 1, 2, "2026-11-25T10:00:00.000Z");
    let b = function("b", 1, 1, "2026-11-25T12:00:00.000Z");
    let c = function("c", 1, 1, "2026-11-25T11:00:00.000Z");
    let d = function("d", 2, 0, "2026-11-25T09:00:00.000Z");
    let mut plain = function("e", 1, 3, "2026-11-25T09:00:00.000Z");
    plain.template_id = None;
    plain.inputs_schema = json!([]);
    plain.inputs = Map::new();
    plain.filters = json!({});
    plain.enabled = false;
    plain.execution_order = -1;
    for f in [&d, &a, &b, &c, &plain] {
        store.save_function(f).expect("save");
    }
    let ids = |list: Vec<HogFunction>| list.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(store.functions(Some(1)).expect("list")), ["e", "c", "b", "a"]);
    assert_eq!(ids(store.functions(None).expect("list")), ["e", "c", "b", "a", "d"]);
    assert_eq!(ids(store.functions(Some(3)).expect("list")), Vec::<String>::new());
    assert_eq!(store.function(1, "e").expect("read"), Some(plain.clone()));
    assert_eq!(store.function(2, "d").expect("read"), Some(d.clone()));
    assert_eq!(store.function(2, "a").expect("read"), None, "another project's function");
    assert_eq!(store.function_by_id("d").expect("read"), Some(d.clone()), "by id alone, any project");
    assert_eq!(store.function_by_id("nope").expect("read"), None);

    // Replacing keeps created_at and changes everything else.
    let mut changed = a.clone();
    changed.name = "renamed".into();
    changed.enabled = false;
    changed.template_id = None;
    changed.execution_order = 0;
    changed.inputs.insert("token".into(), json!({"value": "NEWSECRET"}));
    changed.created_at = "2030-01-01T00:00:00.000Z".into();
    changed.updated_at = "2026-11-26T00:00:00.000Z".into();
    store.save_function(&changed).expect("replace");
    let read = store.function(1, "a").expect("read").expect("exists");
    assert_eq!(read, HogFunction { created_at: a.created_at.clone(), ..changed.clone() });
    assert_eq!(ids(store.functions(Some(1)).expect("list")), ["e", "a", "c", "b"]);

    // An id of another project's function is not taken over.
    let stolen = HogFunction { project_id: 2, ..changed };
    assert!(matches!(store.save_function(&stolen), Err(StoreError::Conflict(_))));
    assert_eq!(store.function(1, "a").expect("read").map(|f| f.project_id), Some(1));

    assert!(!store.delete_function(2, "a").expect("delete in the wrong project"));
    assert!(store.delete_function(1, "a").expect("delete"));
    assert!(!store.delete_function(1, "a").expect("delete again"));
    assert_eq!(store.function(1, "a").expect("read"), None);
    assert_eq!(ids(store.functions(None).expect("list")), ["e", "c", "b", "d"]);
}

fn log(function_id: &str, second: u32, message: &str) -> FunctionLog {
    FunctionLog {
        project_id: 1,
        function_id: function_id.into(),
        timestamp: format!("2026-11-25T10:00:{second:02}.000Z"),
        level: if second.is_multiple_of(2) { "info" } else { "error" }.into(),
        invocation_id: format!("inv-{second}"),
        message: message.into(),
    }
}

fn logs_are_trimmed_and_paged(backend: &Backend) {
    let store = backend.open();
    let first: Vec<_> = (0..4).map(|s| log("f", s, &format!("line {s}"))).collect();
    store.append_logs(&first, 5).expect("append");
    store.append_logs(&[log("g", 0, "other function")], 5).expect("append");
    let second: Vec<_> = (4..7).map(|s| log("f", s, &format!("line {s}"))).collect();
    store.append_logs(&second, 5).expect("append");

    let messages = |logs: Vec<FunctionLog>| logs.into_iter().map(|l| l.message).collect::<Vec<_>>();
    assert_eq!(
        messages(store.logs(1, "f", 100, None).expect("logs")),
        ["line 6", "line 5", "line 4", "line 3", "line 2"]
    );
    // Trimmed for real, and only the touched function.
    assert_eq!(backend.column("SELECT COUNT(*) FROM function_logs WHERE function_id = 'f'"), ["5"]);
    assert_eq!(messages(store.logs(1, "g", 100, None).expect("logs")), ["other function"]);
    assert_eq!(store.logs(2, "f", 100, None).expect("another project"), []);

    // Paging: newest first, then older than the last one seen (in any RFC 3339 spelling).
    let page = store.logs(1, "f", 2, None).expect("page 1");
    assert_eq!(page, [log("f", 6, "line 6"), log("f", 5, "line 5")]);
    let page = store.logs(1, "f", 2, Some(&page[1].timestamp)).expect("page 2");
    assert_eq!(messages(page), ["line 4", "line 3"]);
    let page = store.logs(1, "f", 2, Some("2026-11-25T11:00:03+01:00")).expect("page 3");
    assert_eq!(messages(page), ["line 2"]);
    let page = store.logs(1, "f", 2, Some("2026-11-25T10:00:02Z")).expect("page 4");
    assert_eq!(page, []);

    // A batch larger than the cap keeps its newest lines; a cap of 0 keeps none.
    let burst: Vec<_> = (10..20).map(|s| log("g", s, &format!("burst {s}"))).collect();
    store.append_logs(&burst, 3).expect("append");
    assert_eq!(messages(store.logs(1, "g", 100, None).expect("logs")), ["burst 19", "burst 18", "burst 17"]);
    store.append_logs(&[log("g", 30, "gone")], 0).expect("append");
    assert_eq!(store.logs(1, "g", 100, None).expect("logs"), []);
    assert_eq!(backend.column("SELECT COUNT(*) FROM function_logs"), ["5"]);
}

fn metric(function_id: &str, metric: &str, hour: u32, count: u64) -> MetricDelta {
    MetricDelta {
        project_id: 1,
        function_id: function_id.into(),
        metric: metric.into(),
        bucket: format!("2026-11-25T{hour:02}:00:00Z"),
        count,
    }
}

fn metrics_accumulate(backend: &Backend) {
    let store = backend.open();
    store
        .add_metrics(&[
            metric("f", "succeeded", 10, 3),
            metric("f", "invocations", 10, 4),
            metric("f", "failed", 10, 1),
            metric("g", "succeeded", 10, 100),
        ])
        .expect("add");
    store
        .add_metrics(&[
            metric("f", "succeeded", 10, 2),
            metric("f", "invocations", 11, 7),
            metric("f", "succeeded", 10, 1),
        ])
        .expect("add again");
    store.add_metrics(&[]).expect("nothing");
    assert_eq!(
        store.metrics(1, "f", "2026-11-25T00:00:00Z").expect("metrics"),
        [
            metric("f", "failed", 10, 1),
            metric("f", "invocations", 10, 4),
            metric("f", "succeeded", 10, 6),
            metric("f", "invocations", 11, 7),
        ]
    );
    assert_eq!(store.metrics(1, "f", "2026-11-25T11:00:00Z").expect("inclusive"), [metric("f", "invocations", 11, 7)]);
    assert_eq!(store.metrics(1, "f", "2026-11-25T11:00:00.000+00:00").expect("any spelling").len(), 1);
    assert_eq!(store.metrics(1, "f", "2026-11-25T12:00:00Z").expect("after"), []);
    assert_eq!(store.metrics(1, "g", "2026-11-25T00:00:00Z").expect("g"), [metric("g", "succeeded", 10, 100)]);
    assert_eq!(store.metrics(2, "f", "2026-11-25T00:00:00Z").expect("other project"), []);
}

fn aggregates_crud(backend: &Backend) {
    let store = backend.open();
    let agg = |project_id: u64, id: &str, window: u64| StoredAggregate {
        project_id,
        id: id.into(),
        definition: json!({"id": id, "event": "$pageview", "group_by": ["$browser"], "window_secs": window}),
    };
    store.save_aggregate(&agg(2, "views", 60)).expect("save");
    store.save_aggregate(&agg(1, "views", 60)).expect("save");
    store.save_aggregate(&agg(1, "clicks", 60)).expect("save");
    assert_eq!(store.aggregates().expect("list"), [agg(1, "clicks", 60), agg(1, "views", 60), agg(2, "views", 60)]);
    store.save_aggregate(&agg(1, "views", 300)).expect("replace");
    assert_eq!(store.aggregates().expect("list"), [agg(1, "clicks", 60), agg(1, "views", 300), agg(2, "views", 60)]);
    assert!(store.delete_aggregate(1, "views").expect("delete"));
    assert!(!store.delete_aggregate(1, "views").expect("delete again"));
    assert!(!store.delete_aggregate(3, "clicks").expect("wrong project"));
    assert_eq!(store.aggregates().expect("list"), [agg(1, "clicks", 60), agg(2, "views", 60)]);
}

/// PostgreSQL only: no error or description shows the URL's password.
#[test]
fn postgres_errors_hide_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |url: &str| {
        Store::open(&StoreConfig { url: Some(url.into()), ..StoreConfig::default() }, dir.path()).map(|_| ())
    };
    for url in [
        "postgres://postgres:Sup3rSecretPw@127.0.0.1:1/hogpipe",
        "postgres://postgres:Sup3rSecretPw@127.0.0.1:notaport/hogpipe",
        "host=127.0.0.1 port=1 user=postgres password=Sup3rSecretPw dbname=hogpipe",
    ] {
        match open(url) {
            Err(e) => assert!(!e.to_string().contains("Sup3rSecretPw"), "{e}"),
            Ok(()) => panic!("{url} opened"),
        }
    }
    let Some(backend) = Backend::postgres() else { return };
    // Trust authentication accepts any password.
    let url = backend.url().expect("url").replacen("postgres@", "postgres:Sup3rSecretPw@", 1);
    let store = Store::open(&StoreConfig { url: Some(url), ..StoreConfig::default() }, dir.path()).expect("open");
    assert!(!store.describe().contains("Sup3rSecretPw"), "{}", store.describe());
    assert!(store.describe().contains("@127.0.0.1:"), "{}", store.describe());
}

/// PostgreSQL only: a connection the server dropped is made again once.
#[test]
fn postgres_reconnects_after_the_connection_died() {
    let Some(backend) = Backend::postgres() else { return };
    let store = backend.open();
    store.create_project("One", "phc_one").expect("create");
    let (_, db) = backend.postgres.as_ref().expect("postgres");
    let mut admin = ::postgres::Client::connect(server().expect("server"), ::postgres::NoTls).expect("connect");
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[db],
        )
        .expect("terminate");
    assert_eq!(killed.len(), 1, "the store's one connection");
    assert_eq!(project_list(&store), owned(&[(1, "One", "phc_one")]));
    store.create_project("Two", "phc_two").expect("write after reconnecting");
    assert_eq!(project_list(&store).len(), 2);
}

//! The two databases behind one small interface: statements written once with `?1` placeholders
//! (translated to `$1` for PostgreSQL), integer and text values only, every call inside a
//! transaction. Also the one list of migrations both run.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::StoreError;

/// A statement parameter. Integers are BIGINT everywhere, so one Rust type fits both databases.
#[derive(Debug, Clone)]
pub(super) enum Param {
    /// A BIGINT.
    Int(i64),
    /// A TEXT.
    Text(String),
    /// A NULL TEXT.
    NullText,
}

impl From<i64> for Param {
    fn from(value: i64) -> Param {
        Param::Int(value)
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Param {
        Param::Text(value.to_string())
    }
}

impl From<String> for Param {
    fn from(value: String) -> Param {
        Param::Text(value)
    }
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Int(i64),
    Text(String),
    Null,
}

/// One result row.
#[derive(Debug, Clone)]
pub(super) struct Row(Vec<Cell>);

impl Row {
    fn cell(&self, index: usize) -> Result<&Cell, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::Corrupt(format!("result row has no column {index}")))
    }

    /// An integer column.
    pub(super) fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.cell(index)? {
            Cell::Int(value) => Ok(*value),
            other => Err(StoreError::Corrupt(format!("column {index} holds {other:?}, not an integer"))),
        }
    }

    /// A text column.
    pub(super) fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.cell(index)? {
            Cell::Text(value) => Ok(value.clone()),
            other => Err(StoreError::Corrupt(format!("column {index} holds {other:?}, not text"))),
        }
    }

    /// A text column that may be NULL.
    pub(super) fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }
}

/// What a transaction can do, on either database.
pub(super) trait Conn {
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError>;
    /// Runs one query; its rows.
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, StoreError>;
    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Which database this is.
    fn dialect(&self) -> Dialect;
}

/// The database kind, for the few places the SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The migrations, in order: (version, name, statements). Written in SQL both databases accept;
/// the only difference, the auto-increment key, is spelled `{serial}`. Never edit an applied
/// migration: add the next one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial state tables",
    "CREATE TABLE projects (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        token TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        mask TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE api_key_projects (
        key_id TEXT NOT NULL,
        project_id BIGINT NOT NULL,
        PRIMARY KEY (key_id, project_id)
    );
    CREATE TABLE hog_functions (
        id TEXT PRIMARY KEY,
        project_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        enabled BIGINT NOT NULL,
        template_id TEXT,
        hog TEXT NOT NULL,
        bytecode TEXT NOT NULL,
        inputs_schema TEXT NOT NULL,
        inputs TEXT NOT NULL,
        filters TEXT NOT NULL,
        execution_order BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX hog_functions_by_project ON hog_functions (project_id, execution_order, created_at);
    CREATE TABLE function_logs (
        id {serial},
        project_id BIGINT NOT NULL,
        function_id TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        level TEXT NOT NULL,
        invocation_id TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX function_logs_by_id ON function_logs (project_id, function_id, id);
    CREATE INDEX function_logs_by_time ON function_logs (project_id, function_id, timestamp);
    CREATE TABLE function_metrics (
        project_id BIGINT NOT NULL,
        function_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        bucket TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (project_id, function_id, metric, bucket)
    );
    CREATE TABLE live_aggregates (
        project_id BIGINT NOT NULL,
        id TEXT NOT NULL,
        definition TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );",
)];

/// The migrations' bookkeeping table.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS hogpipe_state_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// A migration's statements for one database.
fn migration_sql(sql: &str, dialect: Dialect) -> String {
    let serial = match dialect {
        Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    sql.replace("{serial}", serial)
}

/// Applies the migrations not yet recorded in `hogpipe_state_migrations`; the versions applied.
fn migrate(conn: &mut dyn Conn) -> Result<Vec<i64>, StoreError> {
    conn.batch(MIGRATIONS_TABLE)?;
    if conn.dialect() == Dialect::Postgres {
        // Two processes opening the same database at once: the second waits, then sees the
        // first one's versions. (SQLite's write transaction already excludes the other.)
        conn.batch("LOCK TABLE hogpipe_state_migrations IN EXCLUSIVE MODE")?;
    }
    let applied: Vec<i64> = conn
        .query("SELECT version FROM hogpipe_state_migrations", &[])?
        .iter()
        .map(|row| row.int(0))
        .collect::<Result<_, _>>()?;
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        conn.batch(&migration_sql(sql, conn.dialect()))
            .map_err(|e| StoreError::Unavailable(format!("migration {version} ({name}): {e}")))?;
        conn.execute(
            "INSERT INTO hogpipe_state_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            &[Param::Int(*version), Param::from(*name), Param::Text(super::implementation::now())],
        )?;
        done.push(*version);
    }
    Ok(done)
}

/// `?N` placeholders as PostgreSQL's `$N` (outside quoted strings and identifiers).
fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// An open database.
pub(super) enum Db {
    /// One SQLite connection.
    Sqlite(Mutex<rusqlite::Connection>),
    /// One PostgreSQL connection, made again once when it broke.
    Postgres(Box<Postgres>),
}

/// A PostgreSQL database.
pub(super) struct Postgres {
    config: postgres::Config,
    client: Mutex<Option<postgres::Client>>,
    /// The URL's password, removed from every error message.
    password: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction dropped (rolled back) it: the connection is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Db {
    /// Opens the SQLite file (creating it and its directory), WAL mode, a busy timeout.
    pub(super) fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("sqlite {}: {what}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable("creating its directory", &e))?;
        }
        let conn = rusqlite::Connection::open(path).map_err(|e| unavailable("opening", &e))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| unavailable("setting the busy timeout", &e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| unavailable("switching to WAL", &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!("sqlite {}: journal mode is {mode}, not WAL", path.display())));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| unavailable("setting synchronous", &e))?;
        let db = Db::Sqlite(Mutex::new(conn));
        db.write(&migrate)?;
        Ok(db)
    }

    /// Connects to PostgreSQL and applies the migrations.
    pub(super) fn open_postgres(url: &str) -> Result<Db, StoreError> {
        let password = url_password(url);
        let redact = |message: String| redact(message, password.as_deref());
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            StoreError::Unavailable(redact(format!("the postgres URL does not parse: {e}")))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("hogpipe");
        }
        let db = Db::Postgres(Box::new(Postgres { config, client: Mutex::new(None), password }));
        db.write(&migrate)?;
        Ok(db)
    }

    /// `sqlite <path>` or `postgres user@host:port/db`: never a password.
    pub(super) fn describe(&self, sqlite_path: Option<&Path>) -> String {
        match self {
            Db::Sqlite(_) => format!("sqlite {}", sqlite_path.map_or_else(String::new, |p| p.display().to_string())),
            Db::Postgres(pg) => describe_postgres(&pg.config),
        }
    }

    /// Runs `f` in a read transaction.
    pub(super) fn read<T>(&self, f: &dyn Fn(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.transaction(false, f)
    }

    /// Runs `f` in a write transaction (on SQLite, one that takes the write lock at once).
    pub(super) fn write<T>(&self, f: &dyn Fn(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.transaction(true, f)
    }

    fn transaction<T>(&self, write: bool, f: &dyn Fn(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match self {
            Db::Sqlite(conn) => {
                let mut conn = lock(conn);
                let behavior = if write {
                    rusqlite::TransactionBehavior::Immediate
                } else {
                    rusqlite::TransactionBehavior::Deferred
                };
                let mut tx = conn.transaction_with_behavior(behavior).map_err(sqlite_error)?;
                let out = f(&mut SqliteTx(&mut tx))?;
                tx.commit().map_err(sqlite_error)?;
                Ok(out)
            }
            Db::Postgres(pg) => pg.transaction(f),
        }
    }
}

impl Postgres {
    fn redact(&self, message: String) -> String {
        redact(message, self.password.as_deref())
    }

    fn connect(&self) -> Result<postgres::Client, StoreError> {
        self.config.connect(postgres::NoTls).map_err(|e| {
            StoreError::Unavailable(self.redact(format!("{}: connecting: {e}", describe_postgres(&self.config))))
        })
    }

    /// Runs `f` in a transaction; when the connection turns out to have died, connects again and
    /// runs it once more. (A commit whose answer was lost with the connection could so be applied
    /// twice; the state store's writes are replacements or counters, where that is harmless or
    /// rare enough.)
    fn transaction<T>(&self, f: &dyn Fn(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut slot = lock(&self.client);
        for attempt in 0..2 {
            let client = match slot.as_mut() {
                Some(client) if !client.is_closed() => client,
                _ => slot.insert(self.connect()?),
            };
            let result = (|| {
                let mut tx = client.transaction().map_err(|e| self.error(e))?;
                let out = f(&mut PostgresTx { tx: &mut tx, pg: self })?;
                tx.commit().map_err(|e| self.error(e))?;
                Ok(out)
            })();
            match result {
                // A terminated backend may say so (57P01) before the socket reads as closed.
                Err(e) if attempt == 0 && (client.is_closed() || matches!(e, StoreError::Unavailable(_))) => {
                    tracing::warn!(error = %e, "state store: the postgres connection broke; connecting again");
                    *slot = None;
                }
                other => return other,
            }
        }
        Err(StoreError::Unavailable("the postgres connection keeps breaking".into()))
    }

    fn error(&self, e: postgres::Error) -> StoreError {
        if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
            return StoreError::Conflict(self.redact(format!("already exists: {}", pg_message(&e))));
        }
        if e.is_closed() || disconnected(&e) {
            return StoreError::Unavailable(self.redact(format!("the postgres connection closed: {}", pg_message(&e))));
        }
        StoreError::Query(self.redact(pg_message(&e)))
    }
}

/// The server ended this connection: shut down, restarted, or an administrator terminated the
/// backend (SQLSTATE class 57P).
fn disconnected(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(c))
}

/// The server's own message (with detail) rather than the bare "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail}", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(format!("already exists: {e}")),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("sqlite is busy: {e}"))
        }
        _ => StoreError::Query(e.to_string()),
    }
}

/// Where a PostgreSQL config points, for messages (never the password).
fn describe_postgres(config: &postgres::Config) -> String {
    format!("postgres {}", hogpipe_destinations::sinks::describe_postgres(config))
}

/// The password in a `postgres://user:password@host/db` URL or a `password=…` key-value string,
/// found without trusting the URL to parse.
fn url_password(url: &str) -> Option<String> {
    if let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@')?.0;
        let password = userinfo.split_once(':')?.1;
        return (!password.is_empty()).then(|| password.to_string());
    }
    let start = url.find("password=")? + "password=".len();
    let rest = &url[start..];
    let password = match rest.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next().unwrap_or(""),
        None => rest.split_whitespace().next().unwrap_or(""),
    };
    (!password.is_empty()).then(|| password.to_string())
}

/// `message` without the password (also percent-decoded, as the client may show it).
fn redact(message: String, password: Option<&str>) -> String {
    let Some(password) = password else { return message };
    let mut out = message.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() && decoded != password {
        out = out.replace(&decoded, "***");
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct SqliteTx<'a, 'c>(&'a mut rusqlite::Transaction<'c>);

fn sqlite_params(params: &[Param]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(v) => rusqlite::types::Value::Integer(*v),
            Param::Text(v) => rusqlite::types::Value::Text(v.clone()),
            Param::NullText => rusqlite::types::Value::Null,
        })
        .collect()
}

impl Conn for SqliteTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(sqlite_error)?;
        let changed = statement.execute(rusqlite::params_from_iter(sqlite_params(params))).map_err(sqlite_error)?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(sqlite_error)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(sqlite_params(params))).map_err(sqlite_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut cells = Vec::with_capacity(columns);
            for index in 0..columns {
                cells.push(match row.get_ref(index).map_err(sqlite_error)? {
                    rusqlite::types::ValueRef::Null => Cell::Null,
                    rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                    rusqlite::types::ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "column {index} holds a {:?}, not an integer or text",
                            other.data_type()
                        )))
                    }
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.0.execute_batch(sql).map_err(sqlite_error)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

struct PostgresTx<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    pg: &'a Postgres,
}

static NULL_TEXT: Option<String> = None;

fn postgres_params(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(v) => v as &(dyn postgres::types::ToSql + Sync),
            Param::Text(v) => v as &(dyn postgres::types::ToSql + Sync),
            Param::NullText => &NULL_TEXT as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

impl Conn for PostgresTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        self.tx.execute(&postgres_sql(sql), &postgres_params(params)).map_err(|e| self.pg.error(e))
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
        let rows = self.tx.query(&postgres_sql(sql), &postgres_params(params)).map_err(|e| self.pg.error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity(row.len());
            for (index, column) in row.columns().iter().enumerate() {
                use postgres::types::Type;
                let get_err = |e: postgres::Error| StoreError::Corrupt(format!("column {}: {e}", column.name()));
                let cell = match *column.type_() {
                    Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(get_err)?.map(Cell::Int),
                    Type::INT4 => row.try_get::<_, Option<i32>>(index).map_err(get_err)?.map(|v| Cell::Int(v.into())),
                    Type::INT2 => row.try_get::<_, Option<i16>>(index).map_err(get_err)?.map(|v| Cell::Int(v.into())),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                        row.try_get::<_, Option<String>>(index).map_err(get_err)?.map(Cell::Text)
                    }
                    ref other => {
                        return Err(StoreError::Corrupt(format!(
                            "column {} has type {other}, not an integer or text",
                            column.name()
                        )))
                    }
                };
                cells.push(cell.unwrap_or(Cell::Null));
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.tx.batch_execute(sql).map_err(|e| self.pg.error(e))
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_translate_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?10"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $10"
        );
    }

    #[test]
    fn passwords_are_found_and_redacted() {
        assert_eq!(url_password("postgres://u:p%40ss@h:5/db").as_deref(), Some("p%40ss"));
        assert_eq!(url_password("postgresql://u@h/db"), None);
        assert_eq!(url_password("host=h password='se cret' user=u").as_deref(), Some("se cret"));
        assert_eq!(url_password("host=h password=secret user=u").as_deref(), Some("secret"));
        assert_eq!(redact("bad p@ss and p%40ss".into(), Some("p%40ss")), "bad *** and ***");
    }

    #[test]
    fn one_migration_list_for_both() {
        for (_, _, sql) in MIGRATIONS {
            assert!(migration_sql(sql, Dialect::Postgres).contains("BIGSERIAL"));
            assert!(!migration_sql(sql, Dialect::Sqlite).contains('{'));
        }
    }
}

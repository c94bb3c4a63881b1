//! The embedded backend: ClickHouse in-process through chDB's C API.
//!
//! `libchdb.so` is not linked: it is loaded at run time (`libloading`), so building hogpipe never
//! needs it. [`library_path`] says where it is looked for; `scripts/install-chdb.sh` fetches the
//! pinned version into the cache. chDB keeps one storage path per process; a connection runs one
//! statement at a time, so the backend keeps a small pool of connections to the same path.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use crate::backend::{Backend, WarehouseError};

/// The chDB version `scripts/install-chdb.sh` installs by default.
pub const CHDB_VERSION: &str = "26.7.3-stable.1";

type Connection = *mut c_void; // chdb_connection: a pointer to an opaque struct
type ConnectFn = unsafe extern "C" fn(c_int, *mut *mut c_char) -> *mut Connection;
type CloseFn = unsafe extern "C" fn(*mut Connection);
type QueryFn = unsafe extern "C" fn(Connection, *const c_char, usize, *const c_char, usize) -> *mut c_void;
type ResultBufferFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type ResultLengthFn = unsafe extern "C" fn(*mut c_void) -> usize;
type ResultErrorFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type DestroyResultFn = unsafe extern "C" fn(*mut c_void);
type SignalsFn = unsafe extern "C" fn(c_int);
type StreamInsertFn = unsafe extern "C" fn(Connection, *const c_char, usize, *const c_char, usize) -> *mut c_void;
type StreamAppendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> c_int;
type StreamDoneFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type StreamErrorFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type StreamDestroyFn = unsafe extern "C" fn(*mut c_void);

/// chDB's streaming INSERT (26.x): rows are handed over without building a query around them.
#[derive(Clone, Copy)]
struct StreamApi {
    insert: StreamInsertFn,
    append: StreamAppendFn,
    done: StreamDoneFn,
    error: StreamErrorFn,
    destroy: StreamDestroyFn,
}

/// The C API's entry points, resolved once per process.
struct Api {
    _lib: libloading::Library,
    connect: ConnectFn,
    close: CloseFn,
    query: QueryFn,
    buffer: ResultBufferFn,
    length: ResultLengthFn,
    error: ResultErrorFn,
    destroy: DestroyResultFn,
    stream: Option<StreamApi>,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// Where the library is looked for, in order: `$HOGPIPE_CHDB_LIB`, the path given in the config,
/// and the cache dir `scripts/install-chdb.sh` fills (`$HOGPIPE_CACHE` or `~/.cache/hogpipe`,
/// then `chdb/<version>/libchdb.so`).
pub fn library_path(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os("HOGPIPE_CHDB_LIB") {
        return PathBuf::from(p);
    }
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    let cache = std::env::var_os("HOGPIPE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("hogpipe")
    });
    cache.join("chdb").join(CHDB_VERSION).join("libchdb.so")
}

fn load(path: &Path) -> Result<Api, String> {
    if !path.exists() {
        return Err(format!(
            "chDB library not found at {}: run `bash scripts/install-chdb.sh` (fetches @chdb/lib-linux-x64-gnu@{CHDB_VERSION} \
             from npm into the cache), set HOGPIPE_CHDB_LIB to a libchdb.so, or use the ClickHouse server backend \
             ([warehouse] backend = \"clickhouse\")",
            path.display()
        ));
    }
    // SAFETY: loading a shared library runs its initializers; libchdb.so is the library chDB
    // publishes for exactly this use, and it is loaded once per process.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    // SAFETY: the symbol types match chDB's C header (chdb.h, 26.x).
    unsafe {
        fn sym<T: Copy>(lib: &libloading::Library, name: &[u8]) -> Result<T, String> {
            // SAFETY: the caller names the right type for the symbol.
            unsafe { lib.get::<T>(name) }
                .map(|s| *s)
                .map_err(|e| format!("libchdb.so lacks {}: {e} (is it chDB 26.x?)", String::from_utf8_lossy(name)))
        }
        if let Ok(signals) = sym::<SignalsFn>(&lib, b"chdb_set_signal_handlers_enabled\0") {
            // hogpipe handles SIGTERM/SIGHUP itself.
            signals(0);
        }
        let stream = (|| -> Result<StreamApi, String> {
            Ok(StreamApi {
                insert: sym(&lib, b"chdb_stream_insert_n\0")?,
                append: sym(&lib, b"chdb_stream_append\0")?,
                done: sym(&lib, b"chdb_stream_done\0")?,
                error: sym(&lib, b"chdb_stream_insert_error\0")?,
                destroy: sym(&lib, b"chdb_destroy_insert_stream\0")?,
            })
        })()
        .ok();
        Ok(Api {
            stream,
            connect: sym(&lib, b"chdb_connect\0")?,
            close: sym(&lib, b"chdb_close_conn\0")?,
            query: sym(&lib, b"chdb_query_n\0")?,
            buffer: sym(&lib, b"chdb_result_buffer\0")?,
            length: sym(&lib, b"chdb_result_length\0")?,
            error: sym(&lib, b"chdb_result_error\0")?,
            destroy: sym(&lib, b"chdb_destroy_query_result\0")?,
            _lib: lib,
        })
    }
}

fn api(path: &Path) -> Result<&'static Api, WarehouseError> {
    API.get_or_init(|| load(path)).as_ref().map_err(|e| WarehouseError::Unavailable(e.clone()))
}

struct Conn(*mut Connection);
// SAFETY: a chDB connection may be used from any thread, one statement at a time; the pool hands
// each connection to one thread at a time.
unsafe impl Send for Conn {}

/// ClickHouse in-process, storing its data under one directory.
pub struct Chdb {
    api: &'static Api,
    path: PathBuf,
    pool: Mutex<Vec<Conn>>,
    available: Condvar,
}

impl std::fmt::Debug for Chdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chdb").field("path", &self.path).finish()
    }
}

impl Chdb {
    /// Opens (creating) the database under `data` with `connections` connections, loading the
    /// library from `library` (see [`library_path`]).
    pub fn open(data: &Path, library: &Path, connections: usize) -> Result<Chdb, WarehouseError> {
        let api = api(library)?;
        std::fs::create_dir_all(data)
            .map_err(|e| WarehouseError::Unavailable(format!("cannot create {}: {e}", data.display())))?;
        let mut pool = Vec::new();
        for _ in 0..connections.max(1) {
            let args = [
                CString::new("clickhouse").unwrap_or_default(),
                CString::new(format!("--path={}", data.display()))
                    .map_err(|_| WarehouseError::Unavailable("the data dir path contains a NUL byte".into()))?,
            ];
            let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
            // SAFETY: argv holds valid NUL-terminated strings that outlive the call.
            let conn = unsafe { (api.connect)(argv.len() as c_int, argv.as_mut_ptr()) };
            // SAFETY: a non-null result points at a connection handle.
            if conn.is_null() || unsafe { (*conn).is_null() } {
                return Err(WarehouseError::Unavailable(format!(
                    "chDB could not open {} (is another hogpipe using this data dir with a different path?)",
                    data.display()
                )));
            }
            pool.push(Conn(conn));
        }
        Ok(Chdb { api, path: data.to_path_buf(), pool: Mutex::new(pool), available: Condvar::new() })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Conn) -> T) -> T {
        let conn = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self.available.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let out = f(&conn);
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        self.available.notify_one();
        out
    }

    fn run(&self, sql: &[u8], format: &str) -> Result<Vec<u8>, WarehouseError> {
        self.with_conn(|conn| {
            // SAFETY: the connection is open and used by this thread only; lengths match buffers.
            unsafe {
                let result = (self.api.query)(
                    *conn.0,
                    sql.as_ptr() as *const c_char,
                    sql.len(),
                    format.as_ptr() as *const c_char,
                    format.len(),
                );
                if result.is_null() {
                    return Err(WarehouseError::Query("chDB returned no result".into()));
                }
                let error = (self.api.error)(result);
                let out = if !error.is_null() {
                    Err(WarehouseError::Query(CStr::from_ptr(error).to_string_lossy().trim().to_string()))
                } else {
                    let buf = (self.api.buffer)(result);
                    let len = (self.api.length)(result);
                    if buf.is_null() || len == 0 {
                        Ok(Vec::new())
                    } else {
                        Ok(std::slice::from_raw_parts(buf as *const u8, len).to_vec())
                    }
                };
                (self.api.destroy)(result);
                out
            }
        })
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        let pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|p| p.into_inner()));
        for conn in pool {
            // SAFETY: each connection is closed once, after its last use.
            unsafe { (self.api.close)(conn.0) };
        }
    }
}

impl Backend for Chdb {
    fn describe(&self) -> String {
        format!("chDB (embedded) at {}", self.path.display())
    }

    fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.run(sql.as_bytes(), "TabSeparated").map(|_| ())
    }

    fn query(&self, sql: &str) -> Result<Vec<u8>, WarehouseError> {
        // The format is part of the statement (`FORMAT JSONCompact`), as on the HTTP interface.
        self.run(sql.as_bytes(), "TabSeparated")
    }

    fn insert(&self, table: &str, format: &str, data: &[u8]) -> Result<(), WarehouseError> {
        // Pieces of about 8 MiB, each ending at a row boundary (a newline in the text formats
        // this is called with).
        let mut cuts = Vec::new();
        let mut at = 0;
        while data.len() - at > 8 << 20 {
            let end = at + (8 << 20);
            match data[end..].iter().position(|&b| b == b'\n') {
                Some(p) => {
                    at = end + p + 1;
                    cuts.push(at);
                }
                None => break,
            }
        }
        self.insert_pieces(table, format, data, &cuts)
    }

    fn insert_pieces(&self, table: &str, format: &str, data: &[u8], cuts: &[usize]) -> Result<(), WarehouseError> {
        let Some(stream) = self.api.stream else {
            let mut sql = Vec::with_capacity(data.len() + 64);
            sql.extend_from_slice(format!("INSERT INTO {table} FORMAT {format}\n").as_bytes());
            sql.extend_from_slice(data);
            return self.run(&sql, "TabSeparated").map(|_| ());
        };
        let query = format!("INSERT INTO {table}");
        self.with_conn(|conn| {
            // SAFETY: the connection is used by this thread only; every handle is destroyed once;
            // the lengths match the buffers.
            unsafe {
                let handle = (stream.insert)(
                    *conn.0,
                    query.as_ptr() as *const c_char,
                    query.len(),
                    format.as_ptr() as *const c_char,
                    format.len(),
                );
                if handle.is_null() {
                    return Err(WarehouseError::Query(format!("chDB could not start an insert into {table}")));
                }
                let failed = |handle: *mut c_void| -> Option<String> {
                    let e = (stream.error)(handle);
                    (!e.is_null()).then(|| CStr::from_ptr(e).to_string_lossy().trim().to_string())
                };
                if let Some(e) = failed(handle) {
                    (stream.destroy)(handle);
                    return Err(WarehouseError::Query(e));
                }
                // Hand the rows over in the given pieces (each ends at a row boundary).
                let mut start = 0;
                for end in cuts.iter().copied().filter(|&c| c > 0 && c < data.len()).chain([data.len()]) {
                    if end <= start {
                        continue;
                    }
                    let piece = &data[start..end];
                    if (stream.append)(handle, piece.as_ptr() as *const c_void, piece.len()) != 0 {
                        let e = failed(handle).unwrap_or_else(|| "the insert stream refused the data".into());
                        (stream.destroy)(handle);
                        return Err(WarehouseError::Query(e));
                    }
                    start = end;
                }
                let result = (stream.done)(handle);
                let out = if result.is_null() {
                    Err(WarehouseError::Query(format!("chDB returned no result for the insert into {table}")))
                } else {
                    let error = (self.api.error)(result);
                    let out = if error.is_null() {
                        Ok(())
                    } else {
                        Err(WarehouseError::Query(CStr::from_ptr(error).to_string_lossy().trim().to_string()))
                    };
                    (self.api.destroy)(result);
                    out
                };
                (stream.destroy)(handle);
                out
            }
        })
    }
}

//! A mirror that misbehaves on purpose: a small HTTP/1.1 server, written here so that each
//! fault is exact, serving a directory as a WebDAV-style mirror does (GET with Range, HEAD,
//! PUT, MKCOL, DELETE) on loopback, except where its [`Fault`] says otherwise. Every response
//! is recorded, with how many body bytes the client actually took.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Component, Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How the server misbehaves. "Chunk objects" are those under `chunks/` and `packs/` (where
/// chunks are stored, one per object or many in a pack); the manifest and
/// the bandwidth object are served as stored unless the fault says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Serves faithfully.
    None,
    /// Chunk objects come back with one byte altered: the right length, the wrong content.
    WrongBytes,
    /// Chunk objects are announced with their full Content-Length, but only half the body is
    /// sent before the connection is closed.
    ShortBody,
    /// A request with `Range` is answered 200 with the whole object.
    IgnoreRange,
    /// Requests are read and never answered; the connection stays open until the server
    /// stops.
    Stall,
    /// Chunk objects are announced with their full Content-Length and half the body is sent;
    /// then nothing more, the connection open until the server stops (a path cut while the
    /// answer was under way).
    StallMidBody,
}

impl Fault {
    fn from_u8(value: u8) -> Self {
        [
            Self::None,
            Self::WrongBytes,
            Self::ShortBody,
            Self::IgnoreRange,
            Self::Stall,
            Self::StallMidBody,
        ]
        .into_iter()
        .find(|f| *f as u8 == value)
        .unwrap_or(Self::None)
    }
}

/// One response the server gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    /// The object path, relative to the root.
    pub path: String,
    /// The `Range` header asked, if any.
    pub range: Option<String>,
    pub status: u16,
    /// The Content-Length announced.
    pub announced: u64,
    /// The body bytes the client took before the body ended or the connection broke.
    pub sent: u64,
    /// Whether the fault changed this response.
    pub faulted: bool,
}

struct Shared {
    root: PathBuf,
    fault: AtomicU8,
    stop: AtomicBool,
    served: Mutex<Vec<Served>>,
}

/// The server, on a loopback port of its own; stopped on drop.
pub struct Hostile {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// How long a connection may sit without a request, or a write without progress, before the
/// server gives up on it: bounds every thread it starts.
const IDLE: Duration = Duration::from_secs(30);
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);

impl Hostile {
    /// Serves `root` (created if missing) on a free loopback port with `fault`.
    pub fn start(root: &Path, fault: Fault) -> Self {
        std::fs::create_dir_all(root)
            .unwrap_or_else(|e| panic!("creating the mirror root {}: {e}", root.display()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("a bound listener's address");
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            fault: AtomicU8::new(fault as u8),
            stop: AtomicBool::new(false),
            served: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("hostile-{addr}"))
            .spawn(move || accept(&listener, &accepting))
            .expect("start the hostile server");
        Hostile {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT/`, the mirror's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Changes the fault for the requests that come next.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Every response so far, in the order they ended.
    pub fn served(&self) -> Vec<Served> {
        self.shared.served.lock().expect("log lock").clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(shared);
                // Connections end by themselves: on the stop flag, or after IDLE.
                let _ = std::thread::Builder::new()
                    .name("hostile-conn".into())
                    .spawn(move || {
                        let _ = connection(stream, &shared);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => std::thread::sleep(TICK),
        }
    }
}

/// A request as far as this server cares.
struct Request {
    method: String,
    path: String,
    range: Option<String>,
    close: bool,
    body: Vec<u8>,
}

/// Serves requests on one connection until the client closes it, a fault breaks it, or the
/// server stops.
fn connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TICK))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader, shared)? else {
            return Ok(());
        };
        let fault = Fault::from_u8(shared.fault.load(Ordering::SeqCst));
        if fault == Fault::Stall {
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(TICK);
            }
            return Ok(());
        }
        let keep_open = respond(&mut writer, &request, fault, shared)?;
        if request.close || !keep_open {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the client closed the connection, went idle, or the
/// server stops.
fn read_request(reader: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    let idle_since = Instant::now();
    while !head.ends_with(b"\r\n\r\n") {
        if shared.stop.load(Ordering::SeqCst) || idle_since.elapsed() > IDLE {
            return Ok(None);
        }
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => head.extend_from_slice(&line),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                head.extend_from_slice(&line);
            }
            Err(e) => return Err(e),
        }
        if head.len() > 64 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default();
    let mut length = 0usize;
    let (mut range, mut close) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "range" => range = Some(value.to_string()),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let mut filled = 0;
    let idle_since = Instant::now();
    while filled < length {
        match reader.read(&mut body[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if idle_since.elapsed() > IDLE || shared.stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Request {
        method,
        path: decode_path(target),
        range,
        close,
        body,
    }))
}

/// The target's path without the leading `/` or a query, percent-decoded.
fn decode_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let bytes = path.trim_start_matches('/').as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file an object path names, if it stays under the root.
fn file_of(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_end_matches('/'));
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| root.join(relative))
}

/// Answers one request; whether the connection may serve another.
fn respond(
    writer: &mut TcpStream,
    request: &Request,
    fault: Fault,
    shared: &Shared,
) -> io::Result<bool> {
    let mut served = Served {
        method: request.method.clone(),
        path: request.path.clone(),
        range: request.range.clone(),
        status: 0,
        announced: 0,
        sent: 0,
        faulted: false,
    };
    let Some(file) = file_of(&shared.root, &request.path) else {
        return finish(writer, shared, served, 400, &[], Vec::new());
    };
    match request.method.as_str() {
        "GET" | "HEAD" => {
            let Ok(mut data) = std::fs::read(&file) else {
                return finish(writer, shared, served, 404, &[], Vec::new());
            };
            let head = request.method == "HEAD";
            let chunk = request.path.starts_with("chunks/") || request.path.starts_with("packs/");
            let mut status = 200;
            let mut headers = Vec::new();
            let total = data.len() as u64;
            match (&request.range, fault) {
                (Some(_), Fault::IgnoreRange) => served.faulted = true,
                (Some(range), _) => match parse_range(range, total) {
                    Some((start, end)) => {
                        data = data[start as usize..=end as usize].to_vec();
                        status = 206;
                        headers.push(format!("Content-Range: bytes {start}-{end}/{total}"));
                    }
                    None => {
                        headers.push(format!("Content-Range: bytes */{total}"));
                        return finish(writer, shared, served, 416, &headers, Vec::new());
                    }
                },
                (None, _) => {}
            }
            if chunk && fault == Fault::WrongBytes && !data.is_empty() {
                let middle = data.len() / 2;
                data[middle] ^= 0x5a;
                served.faulted = true;
            }
            if head {
                headers.push(format!("Content-Length: {}", data.len()));
                served.announced = data.len() as u64;
                return finish(writer, shared, served, status, &headers, Vec::new());
            }
            if chunk && fault == Fault::ShortBody && data.len() > 1 {
                served.faulted = true;
                headers.push(format!("Content-Length: {}", data.len()));
                served.announced = data.len() as u64;
                let half = data.len() / 2;
                data.truncate(half);
                finish(writer, shared, served, status, &headers, data)?;
                // The rest never comes: the connection ends here.
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return Ok(false);
            }
            if chunk && fault == Fault::StallMidBody && data.len() > 1 {
                served.faulted = true;
                headers.push(format!("Content-Length: {}", data.len()));
                served.announced = data.len() as u64;
                data.truncate(data.len() / 2);
                finish(writer, shared, served, status, &headers, data)?;
                // The rest never comes, and the connection stays open.
                while !shared.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                }
                return Ok(false);
            }
            finish(writer, shared, served, status, &headers, data)
        }
        "PUT" => {
            let stored = file
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    let temp = file.with_extension(format!("hostile-{}.tmp", std::process::id()));
                    std::fs::write(&temp, &request.body)?;
                    std::fs::rename(&temp, &file)
                });
            let status = if stored.is_ok() { 201 } else { 500 };
            finish(writer, shared, served, status, &[], Vec::new())
        }
        "MKCOL" => {
            let status = if std::fs::create_dir_all(&file).is_ok() {
                201
            } else {
                500
            };
            finish(writer, shared, served, status, &[], Vec::new())
        }
        "DELETE" => {
            let status = if std::fs::remove_file(&file).is_ok() {
                204
            } else {
                404
            };
            finish(writer, shared, served, status, &[], Vec::new())
        }
        _ => finish(writer, shared, served, 405, &[], Vec::new()),
    }
}

/// `bytes=A-B` or `bytes=A-` as an inclusive range within `total` bytes.
fn parse_range(range: &str, total: u64) -> Option<(u64, u64)> {
    let (start, end) = range.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = match end.trim() {
        "" => total.checked_sub(1)?,
        end => end.parse::<u64>().ok()?.min(total.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

/// Writes the status line, `headers` (adding a Content-Length from `body` unless one is
/// there) and `body`, counting the body bytes the client took, and records the response.
fn finish(
    writer: &mut TcpStream,
    shared: &Shared,
    mut served: Served,
    status: u16,
    headers: &[String],
    body: Vec<u8>,
) -> io::Result<bool> {
    served.status = status;
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for header in headers {
        head += &format!("{header}\r\n");
    }
    if !headers.iter().any(|h| h.starts_with("Content-Length")) {
        head += &format!("Content-Length: {}\r\n", body.len());
        served.announced = body.len() as u64;
    }
    head += "\r\n";
    let written = writer.write_all(head.as_bytes()).and_then(|()| {
        for piece in body.chunks(64 * 1024) {
            writer.write_all(piece)?;
            served.sent += piece.len() as u64;
        }
        writer.flush()
    });
    shared.served.lock().expect("log lock").push(served);
    written.map(|()| true)
}

//! Benchmark of the egress proxy against a direct connection, a plain TCP relay, tinyproxy and
//! squid, all measured in one run against the same origin on 127.0.0.2.
//!
//! `cargo build --release -p ironclaw-proxy && target/release/proxy-bench [--seconds 3]
//!  [--rounds 3] [--only NAME[,NAME…]] [--origin lean|python|nginx]
//!  [--connection keep-alive|close]`, NAME one of ironclaw, plain-relay, tinyproxy, squid
//!  (direct always runs). Run it under `flock -o LOCK` rather than `flock LOCK`: the proxies and
//!  origins it starts would otherwise inherit the lock.
//!
//! Rows (each the median over the rounds; the rounds interleave the contenders):
//! - latency: one connection, sequential `GET /small` (13-byte body), p50 and p99;
//! - requests/s: 32 keep-alive connections of `GET /small`;
//! - MB/s: 4 connections of `GET /1m` (1 MiB bodies);
//! - CPU time (user + system, from /proc, the process and its children) per request in the
//!   req/s row: the proxy's, and the load generator's + origin's for comparison; the proxy's per
//!   MiB in the MB/s row. CPU time per unit of work is far less sensitive to a busy machine than
//!   rates are.
//!
//! Each proxy is asked in absolute form (`GET http://127.0.0.2:PORT/small`, what HTTP_PROXY
//! clients send); the ironclaw proxy is also measured as a CONNECT tunnel (HTTPS_PROXY clients).
//! The plain relay (this binary re-run with `--serve-plain-relay`, its own process; two
//! single-threaded tokio loops on SO_REUSEPORT listeners, as the ironclaw proxy's default; a
//! task per connection doing `copy_bidirectional`, no parsing, no policy) is reached as the
//! origin is reached directly: it is the floor of any relay that terminates TCP.
//! tinyproxy and squid (Debian packages, see tests/deps/proxy.sh) run with their own
//! configuration on 127.0.0.1; a missing one is reported as such and skipped.
//!
//! Origins (`--origin`): `lean` (default) is hyper in this process, one thread — the cheapest
//! origin, the worst case for any proxy's ratio; `python` is Python's standard library file
//! server (ThreadingHTTPServer + SimpleHTTPRequestHandler, HTTP/1.1, TCP_NODELAY) serving two
//! files;
//! `nginx` is Debian's nginx with its packaged defaults serving the same files.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL: &[u8] = b"hello, world\n";
const CONNS: usize = 32;
const BIG_CONNS: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = if args.first().map(String::as_str) == Some("--serve-plain-relay") {
        match args.get(1) {
            Some(origin) => serve_plain_relay(origin),
            None => Err("--serve-plain-relay needs ADDR:PORT".into()),
        }
    } else {
        run()
    };
    if let Err(e) = r {
        eprintln!("proxy-bench: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OriginKind {
    Lean,
    Python,
    Nginx,
}

impl OriginKind {
    fn name(self) -> &'static str {
        match self {
            OriginKind::Lean => "lean (hyper in the bench process, 1 thread)",
            OriginKind::Python => "python (http.server ThreadingHTTPServer, HTTP/1.1)",
            OriginKind::Nginx => "nginx (Debian package, packaged defaults)",
        }
    }
}

struct Opts {
    seconds: f64,
    rounds: usize,
    only: Option<Vec<String>>,
    proxy_threads: Option<String>,
    origin: OriginKind,
    /// One connection per request (`--connection close`) instead of keep-alive.
    close: bool,
}

const CONTENDER_NAMES: [&str; 4] = ["ironclaw", "plain-relay", "tinyproxy", "squid"];

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 3.0,
        rounds: 3,
        only: None,
        proxy_threads: None,
        origin: OriginKind::Lean,
        close: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                o.seconds = val("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds: expected a number of seconds")?
            }
            "--rounds" => {
                o.rounds = val("--rounds")?
                    .parse()
                    .map_err(|_| "--rounds: expected a count")?
            }
            "--only" => {
                let mut names = Vec::new();
                for v in val("--only")?.split(',') {
                    if !CONTENDER_NAMES.contains(&v) {
                        return Err(format!(
                            "--only: unknown contender {v:?} (expected a comma-separated list of {})",
                            CONTENDER_NAMES.join(", ")
                        ));
                    }
                    names.push(v.to_owned());
                }
                o.only = Some(names)
            }
            "--proxy-threads" => o.proxy_threads = Some(val("--proxy-threads")?),
            "--connection" => match val("--connection")?.as_str() {
                "keep-alive" => o.close = false,
                "close" => o.close = true,
                other => {
                    return Err(format!(
                        "--connection: unknown mode {other:?} (expected keep-alive or close)"
                    ));
                }
            },
            "--origin" => {
                o.origin = match val("--origin")?.as_str() {
                    "lean" => OriginKind::Lean,
                    "python" => OriginKind::Python,
                    "nginx" => OriginKind::Nginx,
                    other => {
                        return Err(format!(
                            "--origin: unknown origin {other:?} (expected lean, python or nginx)"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --seconds N, --rounds N, --only NAME, \
                     --proxy-threads N, --origin lean|python|nginx, --connection keep-alive|close)"
                ));
            }
        }
    }
    Ok(o)
}

// ------------------------------------------------------------------------------------------
// Origin
// ------------------------------------------------------------------------------------------

/// The origin every contender reaches, and its process when it is not this one.
struct Origin {
    addr: SocketAddr,
    pid: Option<u32>,
    _proc: Option<Process>,
}

fn start_origin(kind: OriginKind) -> io::Result<Origin> {
    match kind {
        OriginKind::Lean => Ok(Origin {
            addr: start_lean_origin()?,
            pid: None,
            _proc: None,
        }),
        OriginKind::Python => start_python_origin(),
        OriginKind::Nginx => start_nginx_origin(),
    }
}

fn start_lean_origin() -> io::Result<SocketAddr> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(TcpListener::bind("127.0.0.2:0"))?;
    let addr = listener.local_addr()?;
    let big = Bytes::from(vec![b'x'; 1024 * 1024]);
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let big = big.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let body = if req.uri().path() == "/1m" {
                            big.clone()
                        } else {
                            Bytes::from_static(SMALL)
                        };
                        async move { Ok::<_, hyper::Error>(hyper::Response::new(Full::new(body))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        })
    });
    Ok(addr)
}

/// A directory holding `www/small` (13 bytes) and `www/1m` (1 MiB), for file-serving origins.
fn origin_files(name: &str) -> io::Result<PathBuf> {
    let dir = temp_dir(name)?;
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("small"), SMALL)?;
    std::fs::write(www.join("1m"), vec![b'x'; 1024 * 1024])?;
    Ok(dir)
}

/// Python's standard library file server: `http.server.ThreadingHTTPServer` (one thread per
/// connection) with `SimpleHTTPRequestHandler`, as `python3 -m http.server --protocol HTTP/1.1`
/// runs it, with two standard class attributes set: `disable_nagle_algorithm` (without it every
/// keep-alive response waits ~40 ms for a delayed ACK: the head and the body are two writes)
/// and a listen backlog of 128 instead of 5 (connection-per-request proxies overflow 5). Its
/// request log goes to stderr, discarded here.
const PYTHON_ORIGIN: &str = r#"
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128
h = lambda *a, **k: H(*a, directory=sys.argv[3], **k)
S((sys.argv[1], int(sys.argv[2])), h).serve_forever()
"#;

fn start_python_origin() -> io::Result<Origin> {
    let bin = find("python3").ok_or_else(|| io::Error::other("python3 not installed"))?;
    let dir = origin_files("python")?;
    let port = free_port([127, 0, 0, 2])?;
    let child = Command::new(bin)
        .args(["-c", PYTHON_ORIGIN, "127.0.0.2", &port.to_string()])
        .arg(dir.join("www"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    spawned_origin(child, dir, port, "python3 http.server")
}

/// Debian's nginx with the settings of its packaged nginx.conf (worker_processes auto,
/// sendfile, tcp_nopush, access log on), serving the two files.
fn start_nginx_origin() -> io::Result<Origin> {
    let bin = find("nginx").ok_or_else(|| io::Error::other("nginx not installed"))?;
    let dir = origin_files("nginx")?;
    let port = free_port([127, 0, 0, 2])?;
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 768; }}\n\
             http {{\n  sendfile on;\n  tcp_nopush on;\n  types_hash_max_size 2048;\n\
             default_type application/octet-stream;\n  access_log {d}/access.log;\n\
             server {{ listen 127.0.0.2:{port}; root {d}/www; }}\n}}\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    spawned_origin(child, dir, port, "nginx")
}

/// An origin process just spawned on 127.0.0.2:`port`, once it listens. It is owned before the
/// wait, so a failed start still stops the process and removes its files.
fn spawned_origin(child: Child, dir: PathBuf, port: u16, name: &str) -> io::Result<Origin> {
    let addr = SocketAddr::from(([127, 0, 0, 2], port));
    let mut proc = Process {
        child,
        dir: Some(dir),
    };
    wait_listening(addr, &mut proc.child, name)?;
    Ok(Origin {
        addr,
        pid: Some(proc.child.id()),
        _proc: Some(proc),
    })
}

// ------------------------------------------------------------------------------------------
// The plain relay (its own process: this binary with --serve-plain-relay ORIGIN)
// ------------------------------------------------------------------------------------------

/// Buffer per direction of the plain relay (the ironclaw proxy's response buffer is as large).
const RELAY_BUF: usize = 64 * 1024;

/// Event loops of the plain relay: as many as the ironclaw proxy's default.
const RELAY_LOOPS: usize = 2;

/// A listener on 127.0.0.1:`port` (0: any) in a SO_REUSEPORT group.
fn reuseport_listener(port: u16) -> io::Result<std::net::TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Accepts on 127.0.0.1, connects each client to `origin` and copies both ways until either
/// side closes: no parsing, no policy. The same threading as the ironclaw proxy's default:
/// [`RELAY_LOOPS`] single-threaded event loops (tokio's current-thread runtime) on
/// SO_REUSEPORT listeners, so a connection never wakes another thread.
fn serve_plain_relay(origin: &str) -> Result<(), String> {
    let origin: SocketAddr = origin
        .parse()
        .map_err(|_| format!("--serve-plain-relay: expected ADDR:PORT, got {origin:?}"))?;
    let first = reuseport_listener(0).map_err(|e| format!("plain relay: listen: {e}"))?;
    let addr = first.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = vec![first];
    for _ in 1..RELAY_LOOPS {
        listeners.push(reuseport_listener(addr.port()).map_err(|e| format!("plain relay: {e}"))?);
    }
    println!("plain relay on {addr}");
    io::Write::flush(&mut io::stdout()).map_err(|e| e.to_string())?;
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || relay_loop(l, origin)))
        .collect();
    for l in loops {
        l.join()
            .map_err(|_| "plain relay: a loop panicked".to_owned())??;
    }
    Ok(())
}

fn relay_loop(listener: std::net::TcpListener, origin: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut up) = TcpStream::connect(origin).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut up,
                    RELAY_BUF,
                    RELAY_BUF,
                )
                .await;
            });
        }
    })
}

fn start_plain_relay(origin: SocketAddr) -> io::Result<(Process, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let child = Command::new(&exe)
        .args(["--serve-plain-relay", &origin.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", exe.display())))?;
    let mut proc = Process { child, dir: None };
    let line = first_line(&mut proc.child)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("plain relay on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected plain relay output {line:?}")))?;
    Ok((proc, addr))
}

fn first_line(child: &mut Child) -> io::Result<String> {
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        io::BufRead::read_line(&mut io::BufReader::new(out), &mut line)?;
    }
    Ok(line)
}

// ------------------------------------------------------------------------------------------
// Contenders
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Direct,
    Absolute(SocketAddr),
    Connect(SocketAddr),
    /// A transparent relay: spoken to exactly as the origin is.
    Plain(SocketAddr),
}

struct Contender {
    name: String,
    via: Via,
    /// The proxy's process, whose CPU time per request is reported (none for direct).
    pid: Option<u32>,
}

/// CPU time (user + system, all threads) a process, its reaped children and its live
/// descendants have used so far, in µs (nginx and squid work in child processes).
fn cpu_us(pid: u32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, ticks)) = proc_stat(p) {
            procs.push((p, ppid, ticks));
        }
    }
    let mut total = procs.iter().find(|(p, _, _)| *p == pid)?.2;
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, ppid, ticks) in &procs {
            if ppid == parent {
                total += ticks;
                frontier.push(p);
            }
        }
    }
    Some(total * 1e6 / hz as f64)
}

/// CPU time (user + system, all threads) of this process alone, in µs.
fn self_cpu_us() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    (hz > 0).then(|| ticks * 1e6 / hz as f64)
}

/// (parent pid, utime + stime + cutime + cstime in clock ticks) of a process.
fn proc_stat(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start with the state (field 3);
    // the parent is field 4, utime, stime, cutime and cstime are fields 14 to 17.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let mut ticks = 0.0;
    for i in 11..15 {
        ticks += f.get(i)?.parse::<f64>().ok()?;
    }
    Some((ppid, ticks))
}

struct Process {
    child: Child,
    dir: Option<PathBuf>,
}

impl Drop for Process {
    /// SIGTERM first, so that a master process (nginx) takes its workers down with it; SIGKILL
    /// after 5 s. Then the process's generated configuration, files and logs are removed.
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Process {
    fn stop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: [u8; 4]) -> io::Result<u16> {
    Ok(std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?
        .local_addr()?
        .port())
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(io::Error::other(format!("{what} exited early: {st}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::other(format!("{what} did not listen on {addr}")))
}

static PROXY_THREADS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn start_ironclaw(origin: SocketAddr) -> io::Result<(Process, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("ironclaw-proxy");
    let mut cmd = Command::new(&bin);
    if let Some(n) = PROXY_THREADS.get() {
        cmd.args(["--threads", n]);
    }
    let child = cmd
        .args(["--listen", "127.0.0.1:0", "--grant", &origin.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bin.display())))?;
    let mut proc = Process { child, dir: None };
    let line = first_line(&mut proc.child)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("http proxy on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected ironclaw-proxy output {line:?}")))?;
    Ok((proc, addr))
}

fn find(bin: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

fn temp_dir(name: &str) -> io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("proxy-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn start_tinyproxy(origin: SocketAddr) -> io::Result<(Process, SocketAddr)> {
    let bin = find("tinyproxy").ok_or_else(|| io::Error::other("tinyproxy not installed"))?;
    let port = free_port([127, 0, 0, 1])?;
    let dir = temp_dir("tinyproxy")?;
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 256\nAllow 127.0.0.1\n\
             ConnectPort {}\nLogLevel Critical\nDisableViaHeader Yes\nUser nobody\nGroup nogroup\n",
            origin.port()
        ),
    )?;
    let child = Command::new(bin)
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut proc = Process {
        child,
        dir: Some(dir),
    };
    wait_listening(addr, &mut proc.child, "tinyproxy")?;
    Ok((proc, addr))
}

fn start_squid(_origin: SocketAddr) -> io::Result<(Process, SocketAddr)> {
    let bin = find("squid").ok_or_else(|| io::Error::other("squid not installed"))?;
    let port = free_port([127, 0, 0, 1])?;
    let dir = temp_dir("squid")?;
    let d = dir.display();
    // squid drops to the `proxy` user: let it write its pid and log.
    let _ = Command::new("chown").arg("proxy").arg(&dir).status();
    let conf = dir.join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port 127.0.0.1:{port}\nvisible_hostname localhost\nacl loop src 127.0.0.0/8\n\
             http_access allow loop\nhttp_access deny all\ncache deny all\ncache_mem 8 MB\n\
             access_log none\ncache_log {d}/cache.log\npid_filename {d}/squid.pid\n\
             coredump_dir {d}\nshutdown_lifetime 0 seconds\ncache_effective_user proxy\n\
             forwarded_for delete\nvia off\ndns_nameservers 127.0.0.1\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-N")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut proc = Process {
        child,
        dir: Some(dir),
    };
    wait_listening(addr, &mut proc.child, "squid")?;
    Ok((proc, addr))
}

// ------------------------------------------------------------------------------------------
// Load generator
// ------------------------------------------------------------------------------------------

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl Client {
    async fn open(via: Via, origin: SocketAddr) -> io::Result<Client> {
        let addr = match via {
            Via::Direct => origin,
            Via::Absolute(p) | Via::Connect(p) | Via::Plain(p) => p,
        };
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = Client {
            s,
            buf: Vec::with_capacity(16 * 1024),
            scratch: vec![0u8; 256 * 1024],
        };
        if let Via::Connect(_) = via {
            c.s.write_all(
                format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes(),
            )
            .await?;
            let (status, _) = c.read_head().await?;
            if status != 200 {
                return Err(io::Error::other(format!("CONNECT answered {status}")));
            }
        }
        Ok(c)
    }

    async fn read_head(&mut self) -> io::Result<(u16, String)> {
        loop {
            if let Some(end) = find_head_end(&self.buf) {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| io::Error::other("bad status line"))?;
                return Ok((status, head));
            }
            let n = self.s.read(&mut self.scratch).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// One request; returns (body bytes, whether the connection stays open).
    async fn request(&mut self, req: &[u8]) -> io::Result<(usize, bool)> {
        self.s.write_all(req).await?;
        let (status, head) = self.read_head().await?;
        if status != 200 {
            return Err(io::Error::other(format!("status {status}")));
        }
        let len: usize = header_value(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("no content-length"))?;
        let mut have = self.buf.len().min(len);
        self.buf.drain(..have);
        while have < len {
            let want = (len - have).min(self.scratch.len());
            let n = self.s.read(&mut self.scratch[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in body",
                ));
            }
            have += n;
        }
        let close = header_value(&head, "connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || head.starts_with("HTTP/1.0")
                && header_value(&head, "connection")
                    .is_none_or(|v| !v.eq_ignore_ascii_case("keep-alive"));
        Ok((len, !close))
    }
}

/// Set by `--connection close`: one connection (and one CONNECT tunnel) per request, as `ab`
/// without `-k` does.
static CONN_CLOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn conn_close() -> bool {
    CONN_CLOSE.load(std::sync::atomic::Ordering::Relaxed)
}

fn request_bytes(via: Via, origin: SocketAddr, path: &str) -> Vec<u8> {
    let close = if conn_close() {
        "Connection: close\r\n"
    } else {
        ""
    };
    match via {
        Via::Absolute(_) => {
            format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n{close}\r\n")
        }
        Via::Direct | Via::Connect(_) | Via::Plain(_) => {
            format!("GET {path} HTTP/1.1\r\nHost: {origin}\r\n{close}\r\n")
        }
    }
    .into_bytes()
}

/// Runs `conns` connections for `dur`; returns (requests, body bytes, latencies in ns).
async fn load(
    via: Via,
    origin: SocketAddr,
    path: &str,
    conns: usize,
    dur: Duration,
    keep_latencies: bool,
) -> io::Result<(u64, u64, Vec<u64>)> {
    let req = request_bytes(via, origin, path);
    let deadline = Instant::now() + dur;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let req = req.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            let mut bytes = 0u64;
            let mut lat = Vec::new();
            let mut c = Client::open(via, origin).await?;
            let mut used = false;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (len, keep) = match c.request(&req).await {
                    Ok(r) => r,
                    // A server that closes after a response without saying so (tinyproxy):
                    // the time to reconnect counts, as it would for its real clients.
                    Err(e) if used && e.kind() == io::ErrorKind::UnexpectedEof => {
                        c = Client::open(via, origin).await?;
                        c.request(&req).await?
                    }
                    Err(e) => return Err(e),
                };
                used = true;
                if keep_latencies {
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                n += 1;
                bytes += len as u64;
                if !keep || conn_close() {
                    c = Client::open(via, origin).await?;
                    used = false;
                }
            }
            Ok::<_, io::Error>((n, bytes, lat))
        });
    }
    let (mut n, mut bytes, mut lat) = (0, 0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (a, b, l) = r.map_err(io::Error::other)??;
        n += a;
        bytes += b;
        lat.extend(l);
    }
    Ok((n, bytes, lat))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

#[derive(Default, Clone)]
struct Figures {
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<f64>,
    mbps: Vec<f64>,
    /// The proxy's CPU time per request in the req/s row, µs.
    cpu_req: Vec<f64>,
    /// The proxy's CPU time per MiB in the MB/s row, µs.
    cpu_mib: Vec<f64>,
    /// The load generator's (this process) + origin's CPU time per request in the req/s row, µs.
    ends_req: Vec<f64>,
}

fn run() -> Result<(), String> {
    let o = parse_args()?;
    if let Some(n) = &o.proxy_threads {
        let _ = PROXY_THREADS.set(n.clone());
    }
    CONN_CLOSE.store(o.close, std::sync::atomic::Ordering::Relaxed);
    let origin_proc =
        start_origin(o.origin).map_err(|e| format!("origin {}: {e}", o.origin.name()))?;
    let origin = origin_proc.addr;
    // CPU time of the load generator (this process's own threads, which include the lean
    // origin's) plus an external origin's process tree.
    let ends_cpu = || {
        let own = self_cpu_us()?;
        match origin_proc.pid {
            Some(p) => Some(own + cpu_us(p)?),
            None => Some(own),
        }
    };
    let mut procs = Vec::new();
    let mut contenders = vec![Contender {
        name: "direct".into(),
        via: Via::Direct,
        pid: None,
    }];
    let want = |n: &str| {
        o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|x| x == n))
    };
    type Starter = fn(SocketAddr) -> io::Result<(Process, SocketAddr)>;
    let starters: [(&str, Starter); 4] = [
        ("ironclaw", start_ironclaw),
        ("plain-relay", start_plain_relay),
        ("tinyproxy", start_tinyproxy),
        ("squid", start_squid),
    ];
    for (name, start) in starters {
        if !want(name) {
            continue;
        }
        match start(origin) {
            Ok((p, addr)) => {
                let pid = Some(p.child.id());
                procs.push(p);
                let (shown, via) = match name {
                    "plain-relay" => ("plain relay", Via::Plain(addr)),
                    _ => (name, Via::Absolute(addr)),
                };
                contenders.push(Contender {
                    name: shown.into(),
                    via,
                    pid,
                });
                if name == "ironclaw" {
                    contenders.push(Contender {
                        name: "ironclaw CONNECT".into(),
                        via: Via::Connect(addr),
                        pid,
                    });
                }
            }
            Err(e) => eprintln!("proxy-bench: skipping {name}: {e}"),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dur = Duration::from_secs_f64(o.seconds);
    let mut figs = vec![Figures::default(); contenders.len()];
    rt.block_on(async {
        // Warm-up: every contender answers.
        for c in &contenders {
            load(
                c.via,
                origin,
                "/small",
                1,
                Duration::from_millis(200),
                false,
            )
            .await
            .map_err(|e| format!("{} warm-up: {e}", c.name))?;
        }
        for round in 0..o.rounds {
            eprintln!("round {}/{}", round + 1, o.rounds);
            for (i, c) in contenders.iter().enumerate() {
                let (_, _, mut lat) = load(c.via, origin, "/small", 1, dur, true)
                    .await
                    .map_err(|e| format!("{} latency: {e}", c.name))?;
                lat.sort_unstable();
                figs[i].p50.push(percentile(&lat, 0.5));
                figs[i].p99.push(percentile(&lat, 0.99));
                let cpu0 = c.pid.and_then(cpu_us);
                let ends0 = ends_cpu();
                let (n, _, _) = load(c.via, origin, "/small", CONNS, dur, false)
                    .await
                    .map_err(|e| format!("{} requests/s: {e}", c.name))?;
                figs[i].rps.push(n as f64 / o.seconds);
                let cpu1 = c.pid.and_then(cpu_us);
                if let (Some(a), Some(b)) = (ends0, ends_cpu()) {
                    figs[i].ends_req.push((b - a) / n.max(1) as f64);
                }
                if let (Some(a), Some(b)) = (cpu0, cpu1) {
                    figs[i].cpu_req.push((b - a) / n.max(1) as f64);
                }
                let (_, bytes, _) = load(c.via, origin, "/1m", BIG_CONNS, dur, false)
                    .await
                    .map_err(|e| format!("{} MB/s: {e}", c.name))?;
                figs[i].mbps.push(bytes as f64 / o.seconds / 1e6);
                if let (Some(a), Some(b)) = (cpu1, c.pid.and_then(cpu_us)) {
                    figs[i]
                        .cpu_mib
                        .push((b - a) / (bytes.max(1) as f64 / 1048576.0));
                }
            }
        }
        Ok::<_, String>(())
    })?;
    drop(procs);
    report(&contenders, &figs, &o);
    Ok(())
}

fn report(contenders: &[Contender], figs: &[Figures], o: &Opts) {
    let d_p50 = median(figs[0].p50.clone());
    let d_rps = median(figs[0].rps.clone());
    let d_mbps = median(figs[0].mbps.clone());
    println!(
        "proxy-bench: {} rounds x {} s per row, medians over rounds; origin {} on 127.0.0.2, proxies on 127.0.0.1; {}",
        o.rounds,
        o.seconds,
        o.origin.name(),
        if o.close {
            "one connection per request (Connection: close)"
        } else {
            "keep-alive connections"
        }
    );
    println!(
        "| contender | p50 µs | added p50 µs | p99 µs | req/s @{CONNS} conns | vs direct | MB/s 1 MiB @{BIG_CONNS} conns | vs direct | proxy CPU µs/req | client+origin CPU µs/req | proxy CPU µs/MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, f) in contenders.iter().zip(figs) {
        let p50 = median(f.p50.clone());
        let p99 = median(f.p99.clone());
        let rps = median(f.rps.clone());
        let mbps = median(f.mbps.clone());
        let cpu = |v: &Vec<f64>| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.1}", median(v.clone()))
            }
        };
        println!(
            "| {} | {:.1} | {:+.1} | {:.1} | {:.0} | {:.2}x | {:.0} | {:.2}x | {} | {} | {} |",
            c.name,
            p50,
            p50 - d_p50,
            p99,
            rps,
            rps / d_rps,
            mbps,
            mbps / d_mbps,
            cpu(&f.cpu_req),
            cpu(&f.ends_req),
            cpu(&f.cpu_mib),
        );
    }
    // The same figures round by round (each against direct in the same round): the spread
    // shows what the medians hide on a shared machine.
    println!();
    println!("per round (against direct in the same round):");
    let d = &figs[0];
    for (c, f) in contenders.iter().zip(figs).skip(1) {
        let rows = |v: &[f64], dv: &[f64], fmt: &dyn Fn(f64, f64) -> String| {
            v.iter()
                .zip(dv)
                .map(|(a, b)| fmt(*a, *b))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "- {}: added p50 µs {}; req/s {}; MB/s {}",
            c.name,
            rows(&f.p50, &d.p50, &|a, b| format!("{:+.1}", a - b)),
            rows(&f.rps, &d.rps, &|a, b| format!("{:.2}x", a / b)),
            rows(&f.mbps, &d.mbps, &|a, b| format!("{:.2}x", a / b)),
        );
    }
}

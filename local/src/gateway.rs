//! `ironclaw gateway start|stop|status`: the long-lived engine.
//!
//! The gateway listens on `$IRONCLAW_HOME/run/gateway.sock` (directory 0700, socket 0600) and
//! serves only peers running as its own user (checked with SO_PEERCRED on every connection).
//! The protocol is one JSON request line and one JSON response line per connection.
//!
//! Lifecycle events: GATEWAY_START (config hash, sandbox mode, authorised skills); hand edits of
//! the config since the last start as CONFIG_CHANGE; GATEWAY_STOP `planned: true` on
//! `gateway stop` / SIGTERM / SIGINT, and `planned: false` at the next start when the previous
//! gateway died without stopping.

use anyhow::Context;
use clap::Subcommand;
use ironclaw_sidecar::audit::EventType;
use ironclaw_sidecar::config::SandboxMode;
use ironclaw_sidecar::engine::Engine;
use ironclaw_sidecar::home::Home;
use ironclaw_sidecar::{allowlist, fsutil, suspend};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// Start the gateway in the foreground (Ctrl-C or `ironclaw gateway stop` stops it)
    Start {
        /// Run in the background; returns once the gateway answers on its socket
        #[arg(long)]
        detach: bool,
    },
    /// Stop a running gateway (a planned stop, logged as GATEWAY_STOP)
    Stop,
    /// Show whether a gateway is running (exit 1 when it is not)
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// What the gateway records about itself in `state/gateway.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayState {
    pid: u32,
    started_at: String,
    running: bool,
    session_id: String,
}

fn state_path(home: &Home) -> PathBuf {
    home.state_dir().join("gateway.json")
}

fn read_state(home: &Home) -> Option<GatewayState> {
    let text = fsutil::read_optional(&state_path(home)).ok()??;
    serde_json::from_str(&text).ok()
}

fn write_state(home: &Home, st: &GatewayState) -> anyhow::Result<()> {
    fsutil::write_atomic(&state_path(home), &serde_json::to_vec_pretty(st)?, 0o600)?;
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Sends one request to a running gateway; `Ok(None)` when none is listening.
pub fn request(home: &Home, req: &Value) -> anyhow::Result<Option<Value>> {
    let path = home.socket_path();
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(&stream).read_line(&mut resp)?;
    if resp.is_empty() {
        anyhow::bail!("the gateway closed the connection without answering");
    }
    Ok(Some(
        serde_json::from_str(&resp).context("reading the gateway's answer")?,
    ))
}

pub fn run(home: &Home, cmd: GatewayCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        GatewayCommand::Start { detach: false } => start_foreground(home, out),
        GatewayCommand::Start { detach: true } => start_detached(home, out),
        GatewayCommand::Stop => match request(home, &json!({"op": "stop"}))? {
            None => {
                writeln!(out, "gateway is not running")?;
                Ok(ExitCode::FAILURE)
            }
            Some(_) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while home.socket_path().exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                writeln!(out, "gateway stopped")?;
                Ok(ExitCode::SUCCESS)
            }
        },
        GatewayCommand::Status { json: as_json } => {
            match request(home, &json!({"op": "status"}))? {
                None => {
                    if as_json {
                        writeln!(out, "{}", json!({"running": false}))?;
                    } else {
                        writeln!(out, "gateway is not running")?;
                    }
                    Ok(ExitCode::FAILURE)
                }
                Some(v) => {
                    if as_json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                    } else {
                        writeln!(
                            out,
                            "gateway is running: pid {}, sandbox mode {}, {} authorised skill(s), since {}",
                            v["pid"],
                            v["sandboxMode"].as_str().unwrap_or("?"),
                            v["skillsAuthorised"],
                            v["startedAt"].as_str().unwrap_or("?")
                        )?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

fn start_detached(home: &Home, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    if request(home, &json!({"op": "status"}))?.is_some() {
        anyhow::bail!("a gateway is already running (see `ironclaw gateway status`)");
    }
    fsutil::create_private_dir(&home.run_dir())?;
    let log_path = home.run_dir().join("gateway.out");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let exe = std::env::current_exe().context("locating the ironclaw binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["gateway", "start"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the child detaches from our terminal and session.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the gateway process")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = request(home, &json!({"op": "status"})).ok().flatten() {
            writeln!(
                out,
                "gateway started in the background: pid {} (output in {})",
                v["pid"],
                log_path.display()
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last: Vec<&str> = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            anyhow::bail!(
                "the gateway exited ({status}) before answering:\n{}",
                last.join("\n")
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the gateway did not answer within 15 s (see {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn start_foreground(home: &Home, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let engine = Engine::open(home.clone(), "gateway").context("the gateway refuses to start")?;
    if request(home, &json!({"op": "status"}))?.is_some() {
        anyhow::bail!("a gateway is already running (see `ironclaw gateway status`)");
    }
    // An earlier gateway that never logged its stop died: record that now.
    if let Some(prev) = read_state(home)
        && prev.running
        && !(prev.pid != std::process::id() && pid_alive(prev.pid) && home.socket_path().exists())
    {
        engine.emit(
                engine
                    .event(EventType::GatewayStop)
                    .field("planned", false)
                    .field("reason", format!("unplanned: gateway pid {} (started {}) ended without a clean stop; detected at next start", prev.pid, prev.started_at))
                    .field("previousSessionId", prev.session_id),
            )?;
    }
    engine.reconcile_config_snapshot()?;
    let mode = engine.config().security.sandbox.mode;
    let authorised = allowlist::load(home)?.skills.len();
    let mut start = engine
        .event(EventType::GatewayStart)
        .field("configHash", engine.loaded.hash.clone())
        .field("sandboxMode", mode.as_str())
        .field("skillsAuthorised", authorised)
        .field(
            "configSource",
            if engine.loaded.from_file {
                "file"
            } else {
                "embedded-default"
            },
        );
    if mode == SandboxMode::AuditOnly {
        let warning = "AUDIT-ONLY MODE: nothing is blocked; IronClaw provides zero protection. Use it only to learn which grants a skill needs, then set security.sandbox.mode back to strict.";
        eprintln!("\n{}\n!! {warning}\n{}\n", "!".repeat(78), "!".repeat(78));
        start = start.field("warning", warning);
    }
    engine.emit(start)?;
    let started_at = suspend::format_ms(suspend::now_ms());
    write_state(
        home,
        &GatewayState {
            pid: std::process::id(),
            started_at: started_at.clone(),
            running: true,
            session_id: engine.session_id.clone(),
        },
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let engine = Arc::new(engine);
    let reason = rt.block_on(serve(home.clone(), engine.clone(), started_at.clone(), out))?;

    engine.emit(
        engine
            .event(EventType::GatewayStop)
            .field("planned", true)
            .field("reason", reason.clone()),
    )?;
    write_state(
        home,
        &GatewayState {
            pid: std::process::id(),
            started_at,
            running: false,
            session_id: engine.session_id.clone(),
        },
    )?;
    let _ = std::fs::remove_file(home.socket_path());
    writeln!(out, "gateway stopped ({reason})")?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    home: Home,
    engine: Arc<Engine>,
    started_at: String,
    out: &mut dyn Write,
) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    fsutil::create_private_dir(&home.run_dir())?;
    std::fs::set_permissions(home.run_dir(), std::fs::Permissions::from_mode(0o700))?;
    let sock = home.socket_path();
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    writeln!(
        out,
        "gateway running: pid {}, socket {}",
        std::process::id(),
        sock.display()
    )?;
    out.flush()?;

    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<String>(1);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let cred_ok = stream.peer_cred().map(|c| c.uid() == me).unwrap_or(false);
                let (engine, home, started_at, stop_tx) = (engine.clone(), home.clone(), started_at.clone(), stop_tx.clone());
                tokio::spawn(async move {
                    let _ = handle(stream, cred_ok, engine, home, started_at, stop_tx).await;
                });
            }
            Some(reason) = stop_rx.recv() => return Ok(reason),
            _ = sigterm.recv() => return Ok("SIGTERM".into()),
            _ = sigint.recv() => return Ok("SIGINT".into()),
        }
    }
}

async fn handle(
    stream: tokio::net::UnixStream,
    cred_ok: bool,
    engine: Arc<Engine>,
    home: Home,
    started_at: String,
    stop_tx: tokio::sync::mpsc::Sender<String>,
) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, 1 << 20));
    reader.read_line(&mut line).await?;
    let resp = if !cred_ok {
        json!({"ok": false, "error": "refused: the gateway only serves its own user"})
    } else {
        match serde_json::from_str::<Value>(&line) {
            Err(e) => json!({"ok": false, "error": format!("request is not JSON: {e}")}),
            Ok(req) => match req["op"].as_str() {
                Some("status") => {
                    let authorised = allowlist::load(&home).map(|l| l.skills.len()).unwrap_or(0);
                    json!({
                        "ok": true, "running": true, "pid": std::process::id(), "startedAt": started_at,
                        "sandboxMode": engine.config().security.sandbox.mode.as_str(),
                        "skillsAuthorised": authorised, "sessionId": engine.session_id,
                        "configHash": engine.loaded.hash,
                    })
                }
                Some("stop") => {
                    let _ = stop_tx.send("ironclaw gateway stop".into()).await;
                    json!({"ok": true})
                }
                Some(other) => {
                    json!({"ok": false, "error": format!("unknown op {other:?} (allowed: status, stop)")})
                }
                None => json!({"ok": false, "error": "missing \"op\" (allowed: status, stop)"}),
            },
        }
    };
    let mut bytes = serde_json::to_vec(&resp)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    Ok(())
}

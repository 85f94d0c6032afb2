//! `ironclaw gateway start|stop|status`: the long-lived engine.
//!
//! The gateway listens on `$IRONCLAW_HOME/run/gateway.sock` (directory 0700, socket 0600) and
//! serves only peers running as its own user (checked with SO_PEERCRED on every connection).
//! The protocol is one JSON request line and one JSON response line per connection. Ops:
//! - `status`, `stop`
//! - `systemPrompt`: the spec's [UNTRUSTED] instruction text for the model
//! - `content` {source, text, skill?}: scanned (INJECTION_DETECTED: categories and spans, never the
//!   content), wrapped as `[UNTRUSTED source=… id=NONCE] … [/UNTRUSTED id=NONCE]` with a fresh id
//!   recorded in the gateway's ledger; refused outright in `block` mode when flagged
//! - `call` {skill, args?, context?}: a skill call through the same path as `ironclaw skill run`,
//!   output captured; refused when `context` holds a wrapper the gateway flagged or never issued
//! - `configSet` {key, value, context?}: `config set` under the same provenance rule
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

/// What every request handler shares.
struct Ctx {
    engine: Arc<Engine>,
    home: Home,
    started_at: String,
    scanner: ironclaw_scanner::Scanner,
    /// The ids of every [UNTRUSTED] wrapper this gateway issued, and whether it was flagged.
    ledger: ironclaw_scanner::ProvenanceLedger,
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
    let ctx = Arc::new(Ctx {
        engine,
        home,
        started_at,
        scanner: ironclaw_scanner::Scanner::try_new()?,
        ledger: ironclaw_scanner::ProvenanceLedger::new(),
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let cred_ok = stream.peer_cred().map(|c| c.uid() == me).unwrap_or(false);
                let (ctx, stop_tx) = (ctx.clone(), stop_tx.clone());
                tokio::spawn(async move {
                    let _ = handle(stream, cred_ok, ctx, stop_tx).await;
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
    ctx: Arc<Ctx>,
    stop_tx: tokio::sync::mpsc::Sender<String>,
) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, 16 << 20));
    reader.read_line(&mut line).await?;
    let resp = if !cred_ok {
        json!({"ok": false, "error": "refused: the gateway only serves its own user"})
    } else {
        match serde_json::from_str::<Value>(&line) {
            Err(e) => json!({"ok": false, "error": format!("request is not JSON: {e}")}),
            Ok(req) if req["op"] == "stop" => {
                let _ = stop_tx.send("ironclaw gateway stop".into()).await;
                json!({"ok": true})
            }
            // Everything else may write audit events (fsync) or run a skill: off the reactor.
            Ok(req) => tokio::task::spawn_blocking(move || dispatch(&ctx, &req))
                .await
                .unwrap_or_else(|e| json!({"ok": false, "error": format!("internal error: {e}")})),
        }
    };
    let mut bytes = serde_json::to_vec(&resp)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    Ok(())
}

const OPS: &str = "status, stop, systemPrompt, content, call, configSet";

fn field<'a>(req: &'a Value, name: &str, what: &str) -> Result<&'a str, Value> {
    req[name]
        .as_str()
        .ok_or_else(|| json!({"ok": false, "error": format!("\"{name}\" is required: {what}")}))
}

fn dispatch(ctx: &Ctx, req: &Value) -> Value {
    let r = match req["op"].as_str() {
        Some("status") => Ok(status(ctx)),
        Some("systemPrompt") => {
            Ok(json!({"ok": true, "systemPrompt": ironclaw_scanner::SYSTEM_PROMPT}))
        }
        Some("content") => content(ctx, req),
        Some("call") => call(ctx, req),
        Some("configSet") => config_set(ctx, req),
        Some(other) => {
            Err(json!({"ok": false, "error": format!("unknown op {other:?} (allowed: {OPS})")}))
        }
        None => Err(json!({"ok": false, "error": format!("missing \"op\" (allowed: {OPS})")})),
    };
    r.unwrap_or_else(|e| e)
}

fn internal(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

fn status(ctx: &Ctx) -> Value {
    let authorised = allowlist::load(&ctx.home)
        .map(|l| l.skills.len())
        .unwrap_or(0);
    json!({
        "ok": true, "running": true, "pid": std::process::id(), "startedAt": ctx.started_at,
        "sandboxMode": ctx.engine.config().security.sandbox.mode.as_str(),
        "skillsAuthorised": authorised, "sessionId": ctx.engine.session_id,
        "configHash": ctx.engine.loaded.hash,
    })
}

/// The gateway's engine with the config as it is on disk now, so a `config set` made while the
/// gateway runs takes effect on its next request (the audit log and session are shared).
fn current_engine(ctx: &Ctx) -> Result<Arc<Engine>, Value> {
    let loaded = ironclaw_sidecar::config::load(&ctx.home).map_err(internal)?;
    Ok(Arc::new(Engine {
        home: ctx.home.clone(),
        loaded,
        audit: ctx.engine.audit.clone(),
        session_id: ctx.engine.session_id.clone(),
        via: "gateway",
    }))
}

fn injection_mode(engine: &Engine) -> ironclaw_scanner::Mode {
    match engine.config().security.injection_defense.mode {
        ironclaw_sidecar::config::InjectionMode::Flag => ironclaw_scanner::Mode::Flag,
        ironclaw_sidecar::config::InjectionMode::Block => ironclaw_scanner::Mode::Block,
        ironclaw_sidecar::config::InjectionMode::Off => ironclaw_scanner::Mode::Off,
    }
}

/// Retrieved content in: scanned, INJECTION_DETECTED logged (never the content), wrapped as
/// [UNTRUSTED …] with a fresh id recorded in the ledger; in block mode flagged content is refused.
fn content(ctx: &Ctx, req: &Value) -> Result<Value, Value> {
    let source = field(
        req,
        "source",
        "where the content came from, e.g. email, web",
    )?;
    let text = field(req, "text", "the retrieved content")?;
    let skill = req["skill"].as_str();
    let engine = current_engine(ctx)?;
    let result = ctx.scanner.scan(text, injection_mode(&engine));
    let spans: Vec<[usize; 2]> = result
        .spans()
        .into_iter()
        .map(|r| [r.start, r.end])
        .collect();
    if result.detected() {
        let mut ev = ctx
            .engine
            .event(EventType::InjectionDetected)
            .field("source", source)
            .field("categories", json!(result.categories))
            .field("spans", json!(spans))
            .field("decision", json!(result.decision))
            .field("score", f64::from(result.score))
            .field("length", text.len());
        if let Some(s) = skill {
            ev = ev.skill(s);
        }
        ctx.engine.emit(ev).map_err(internal)?;
    }
    if result.decision == ironclaw_scanner::Decision::Block {
        return Ok(
            json!({"ok": true, "decision": "block", "categories": result.categories,
            "message": "content refused: the injection scanner flagged it and security.injectionDefense.mode is block"}),
        );
    }
    let tagged = ctx.ledger.issue(source, text, result.detected());
    Ok(
        json!({"ok": true, "decision": result.decision, "categories": result.categories, "spans": spans,
        "id": tagged.id, "text": tagged.text}),
    )
}

/// Refuses a call or config change whose context holds flagged or never-issued untrusted content.
fn check_provenance(
    ctx: &Ctx,
    req: &Value,
    action: &str,
    skill: Option<&str>,
) -> Result<(), Value> {
    let context = req["context"].as_str().unwrap_or_default();
    match ctx.ledger.check_context_text(context) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut ev = ctx
                .engine
                .event(EventType::InjectionDetected)
                .field("source", "agent-context")
                .field("categories", json!(["provenance"]))
                .field("spans", json!([]))
                .field("decision", "block")
                .field("score", 1.0)
                .field("refused", action)
                .field("reason", e.to_string());
            if let Some(s) = skill {
                ev = ev.skill(s);
            }
            ctx.engine.emit(ev).map_err(internal)?;
            Err(json!({"ok": false, "error": format!("{action} refused: {e}")}))
        }
    }
}

fn call(ctx: &Ctx, req: &Value) -> Result<Value, Value> {
    let skill = field(req, "skill", "the skill to call")?;
    let args: Vec<std::ffi::OsString> = match &req["args"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(std::ffi::OsString::from))
            .collect::<Option<_>>()
            .ok_or_else(|| json!({"ok": false, "error": "\"args\" must be an array of strings"}))?,
        _ => return Err(json!({"ok": false, "error": "\"args\" must be an array of strings"})),
    };
    check_provenance(ctx, req, "skill call", Some(skill))?;
    match crate::run::execute(&current_engine(ctx)?, skill, &args, &[], true)
        .map_err(|e| internal(format!("{e:#}")))?
    {
        crate::run::Outcome::Refused(r) => Err(json!({"ok": false, "error": r.to_string()})),
        crate::run::Outcome::Exited { code, output } => {
            let (stdout, stderr) = output
                .map(|o| {
                    (
                        String::from_utf8_lossy(&o.stdout).into_owned(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    )
                })
                .unwrap_or_default();
            Ok(json!({"ok": true, "exitCode": code, "stdout": stdout, "stderr": stderr}))
        }
    }
}

fn config_set(ctx: &Ctx, req: &Value) -> Result<Value, Value> {
    let key = field(req, "key", "the config key")?;
    let value = field(req, "value", "the new value")?;
    check_provenance(ctx, req, "config change", None)?;
    let mut engine = Engine::open(ctx.home.clone(), "gateway").map_err(internal)?;
    match engine.set_config(key, value).map_err(internal)? {
        Some((before, after)) => Ok(json!({"ok": true, "before": before, "after": after})),
        None => Ok(json!({"ok": true, "unchanged": true})),
    }
}

//! `ironclaw scan`: scan a file or stdin, print the system prompt, or evaluate JSONL sets.
//!
//! Exit codes of [`run`]: 0 = allowed (or an evaluation / `--system-prompt` completed),
//! 1 = flagged or blocked. Errors are returned as `Err` (the caller prints them, exit 2).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::{Mode, SYSTEM_PROMPT, Scanner};

/// Arguments of `ironclaw scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// File to scan; `-` or nothing reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Print the result as JSON (decision, score, categories, findings with byte spans).
    #[arg(long)]
    pub json: bool,
    /// Injection defense mode: flag, block or off.
    #[arg(long, default_value = "flag")]
    pub mode: Mode,
    /// Where the content came from (reported with the result; e.g. email, web, tool:name).
    #[arg(long, default_value = "cli")]
    pub source: String,
    /// Evaluate JSONL files of {"text","label","source"} records instead of scanning.
    #[arg(long, value_name = "FILE.jsonl", num_args = 1..)]
    pub eval: Vec<PathBuf>,
    /// With --eval: write one {"index","decision","categories"} line per record, in input order.
    #[arg(long, value_name = "OUT.jsonl", requires = "eval")]
    pub predictions: Option<PathBuf>,
    /// Print the system prompt IronClaw gives the model, and exit.
    #[arg(long)]
    pub system_prompt: bool,
    /// Also print the wrapped ([UNTRUSTED …]) form of the content.
    #[arg(long)]
    pub tag: bool,
}

#[derive(serde::Serialize)]
struct JsonOut<'a> {
    source: &'a str,
    bytes: usize,
    #[serde(flatten)]
    result: &'a crate::ScanResult,
}

/// Run the command; returns the process exit code.
pub fn run(args: &ScanArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    if args.system_prompt {
        writeln!(out, "{SYSTEM_PROMPT}")?;
        return Ok(0);
    }
    let scanner = Scanner::try_new().context("loading the injection scanner")?;
    if !args.eval.is_empty() {
        if args.input.is_some() {
            anyhow::bail!("--eval takes the files to evaluate; do not also give FILE");
        }
        let mut pred_file = match &args.predictions {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("--predictions: cannot create {}", p.display()))?,
            )),
            None => None,
        };
        let report = crate::eval::evaluate(
            &scanner,
            args.mode,
            &args.eval,
            pred_file.as_mut().map(|w| w as &mut dyn Write),
        )?;
        if let Some(mut w) = pred_file {
            w.flush().context("--predictions: write failed")?;
        }
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        } else {
            crate::eval::write_text(&report, out)?;
        }
        return Ok(0);
    }
    let mut bytes = Vec::new();
    match args.input.as_deref() {
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
        }
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
        }
        Some(p) => {
            bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        }
    }
    // Invalid UTF-8 is scanned lossily (replacement characters), never rejected silently.
    let text = String::from_utf8_lossy(&bytes);
    let result = scanner.scan(&text, args.mode);
    if args.json {
        serde_json::to_writer(
            &mut *out,
            &JsonOut {
                source: &args.source,
                bytes: text.len(),
                result: &result,
            },
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "decision: {}  score: {:.2}  source: {}",
            result.decision.as_str(),
            result.score,
            args.source
        )?;
        for f in &result.findings {
            writeln!(
                out,
                "  {:<22} {:<32} bytes {}..{}  score {:.2}",
                f.category.as_str(),
                f.rule,
                f.span.start,
                f.span.end,
                f.score
            )?;
        }
    }
    if args.tag {
        let t = crate::tag_untrusted(&args.source, &text);
        writeln!(out, "{}", t.text)?;
    }
    Ok(if result.detected() { 1 } else { 0 })
}

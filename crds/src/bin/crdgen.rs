//! Writes the IronClaw CRDs.
//!
//! ```text
//! crdgen                 write both variants into crds/generated/ (next to this crate)
//! crdgen DIR             write both variants into DIR
//! crdgen --print plain   print one variant (plain | cel) to stdout
//! ```

use ironclaw_crds::crd::{Variant, render_yaml};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [flag, which] if flag == "--print" => {
            let v = match which.as_str() {
                "plain" => Variant::Plain,
                "cel" => Variant::Cel,
                other => return Err(format!("--print {other:?}: expected 'plain' or 'cel'")),
            };
            print!("{}", render_yaml(v).map_err(|e| e.to_string())?);
            Ok(())
        }
        [] | [_] => {
            let dir = match args.first() {
                Some(d) if !d.starts_with('-') => PathBuf::from(d),
                Some(d) => {
                    return Err(format!(
                        "unknown flag {d:?}; usage: crdgen [DIR] | crdgen --print plain|cel"
                    ));
                }
                None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("generated"),
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            for v in Variant::ALL {
                let path = dir.join(v.file_name());
                let yaml = render_yaml(v).map_err(|e| e.to_string())?;
                let tmp = path.with_extension("yaml.tmp");
                std::fs::write(&tmp, yaml)
                    .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .map_err(|e| format!("renaming to {}: {e}", path.display()))?;
                eprintln!("crdgen: wrote {}", path.display());
            }
            Ok(())
        }
        _ => Err("usage: crdgen [DIR] | crdgen --print plain|cel".into()),
    }
}

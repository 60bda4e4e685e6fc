use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::template;
use crate::{Error, Result, keys};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replace an existing file
    #[arg(long)]
    force: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let path = &context.config_path;
    if path.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} already exists; pass --force to replace it",
            path.display()
        )));
    }
    let identity = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(IDENTITY_FILE);
    let (recipient, new_key) = match existing_recipient(&identity)? {
        Some(recipient) => (recipient, false),
        None => {
            let key = keys::generate();
            keys::write_identity(&identity, &key)?;
            (key.recipient, true)
        }
    };
    // The config may come to hold secrets: private from the start.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(template::example(&recipient).as_bytes())
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
    if context.json {
        output::print_json(&serde_json::json!({
            "config": path,
            "identity_file": identity,
            "recipient": recipient,
        }));
    } else {
        println!("wrote {}: edit it, then run `cairn check`", path.display());
        if new_key {
            println!(
                "wrote the age identity {} (secret: keep a copy off this machine, restores need it)",
                identity.display()
            );
        } else {
            println!("encrypting to the existing identity {}", identity.display());
        }
    }
    Ok(0)
}

const IDENTITY_FILE: &str = "cairn-identity.txt";

/// The recipient of an identity file that `cairn init` or `cairn keygen` wrote
/// before, so that a second `init` does not orphan the key of existing backups.
fn existing_recipient(identity: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(identity) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Run(format!(
                "cannot read {}: {e}",
                identity.display()
            )));
        }
    };
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(|r| Some(r.trim().to_string()))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} exists but names no public key; move it away or write the config by hand",
                identity.display()
            ))
        })
}

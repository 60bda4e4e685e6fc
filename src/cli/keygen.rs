use std::path::PathBuf;

use crate::store::signature;
use crate::{Result, keys};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the secret key (mode 0600; never overwritten)
    /// [default: cairn-identity.txt, with --signing cairn-signing.key]
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Make a minisign signing key for `signing.key_file` instead of an age
    /// identity; its public key goes beside it (FILE.pub)
    #[arg(long)]
    signing: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    if args.signing {
        return signing_key(context, args.output);
    }
    let key = keys::generate();
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from("cairn-identity.txt"));
    let path = keys::write_identity(&output, &key)?;
    if context.json {
        output::print_json(&serde_json::json!({
            "identity_file": path,
            "recipient": key.recipient,
        }));
    } else {
        eprintln!(
            "wrote the secret identity to {} (keep a copy off this machine: without it backups cannot be decrypted)",
            path.display()
        );
        eprintln!("put the recipient in the job's encryption.recipients:");
        println!("{}", key.recipient);
    }
    Ok(0)
}

fn signing_key(context: &Context, output: Option<PathBuf>) -> Result<u8> {
    let path = output.unwrap_or_else(|| PathBuf::from("cairn-signing.key"));
    let key = signature::generate()?;
    let public_path = signature::write_key_files(&path, &key)?;
    if context.json {
        output::print_json(&serde_json::json!({
            "key_file": path,
            "public_key_file": public_path,
            "public_key": key.public_key,
        }));
    } else {
        eprintln!(
            "wrote the signing key to {} (unencrypted, mode 0600: only the backup host needs it) and its public key to {}",
            path.display(),
            public_path.display()
        );
        eprintln!(
            "configure signing = {{ key_file = \"{}\", public_key = \"{}\" }}; check an artifact with: minisign -Vm MANIFEST -P {}",
            path.display(),
            key.public_key,
            key.public_key
        );
        println!("{}", key.public_key);
    }
    Ok(0)
}

use std::path::PathBuf;

use crate::{Result, keys};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the identity (mode 0600; never overwritten)
    #[arg(long, short = 'o', default_value = "cairn-identity.txt")]
    output: PathBuf,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let key = keys::generate();
    let path = keys::write_identity(&args.output, &key)?;
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

use std::io::Write;

use crate::config::template;
use crate::{Error, Result};

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
    let mut file = std::fs::File::create(path)
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(template::EXAMPLE.as_bytes())
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
    if context.json {
        output::print_json(&serde_json::json!({ "config": path }));
    } else {
        println!("wrote {}: edit it, then run `cairn check`", path.display());
    }
    Ok(0)
}

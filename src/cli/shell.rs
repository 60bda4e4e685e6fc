//! `cairn completions SHELL` and `cairn man`: what a packaged command-line tool
//! installs besides its binary, generated from the same clap definitions.

use std::path::PathBuf;

use clap::CommandFactory;

use crate::{Error, Result};

use super::{Cli, Context, output};

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write cairn.1 and one page per verb (cairn-backup.1, …) into this folder
    /// instead of printing cairn.1
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(_context: &Context, args: CompletionArgs) -> Result<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "cairn", &mut script);
    print!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}

pub fn man(context: &Context, args: ManArgs) -> Result<u8> {
    let command = Cli::command();
    let Some(dir) = args.dir else {
        print!("{}", render(&command, "cairn")?);
        return Ok(0);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Run(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    let mut pages = vec![("cairn".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cairn-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("cairn {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, render(&page, &name)?)
            .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    if context.json {
        output::print_json(&serde_json::json!({ "written": written }));
    } else {
        println!(
            "wrote {} man pages to {} (try `man -l {}`)",
            written.len(),
            dir.display(),
            dir.join("cairn.1").display()
        );
    }
    Ok(0)
}

fn render(command: &clap::Command, title: &str) -> Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(title.to_uppercase())
        .render(&mut page)
        .map_err(|e| Error::Run(format!("cannot render the man page: {e}")))?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

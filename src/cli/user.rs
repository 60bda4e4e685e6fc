//! `cairn user add|list|remove|passwd`: the people who sign in to the web UI.

use std::io::{BufRead, IsTerminal, Read};

use jiff::Timestamp;

use crate::auth::{audit, names, password};
use crate::state::{self, Role, User};
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add a user (asks for the password twice, or reads it from stdin)
    Add {
        name: String,
        /// admin, operator or viewer
        #[arg(long)]
        role: Role,
        /// Read the password from stdin (one line) instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users and their roles
    List,
    /// Remove a user and end their sessions
    Remove { name: String },
    /// Set a user's password and end their sessions
    Passwd {
        name: String,
        /// Read the password from stdin (one line) instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let store = state::open(&config)?;
    let now = Timestamp::now();
    match args.command {
        Command::Add {
            name,
            role,
            password_stdin,
        } => {
            names::check("user", &name)?;
            if store.user(&name)?.is_some() {
                return Err(Error::Usage(format!("user `{name}` exists already")));
            }
            let password_hash = password::hash(&read_password(&name, password_stdin)?)?;
            let user = User {
                name: name.clone(),
                role,
                password_hash,
                created_at: now,
            };
            if !store.add_user(&user)? {
                return Err(Error::Usage(format!("user `{name}` exists already")));
            }
            audit::record(store.as_ref(), now, &actor(), "user.add", &name, "", "ok")?;
            if context.json {
                output::print_json(&user);
            } else {
                println!("user {name} added ({role})");
            }
        }
        Command::List => {
            let users = store.users()?;
            if context.json {
                output::print_json(&users);
            } else if users.is_empty() {
                println!("no users: add the first with `cairn user add NAME --role admin`");
            } else {
                println!("{:<24} {:<9} CREATED", "NAME", "ROLE");
                for user in users {
                    println!(
                        "{:<24} {:<9} {}",
                        user.name,
                        user.role,
                        user.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                    );
                }
            }
        }
        Command::Remove { name } => {
            if !store.remove_user(&name)? {
                return Err(no_such_user(&name));
            }
            audit::record(
                store.as_ref(),
                now,
                &actor(),
                "user.remove",
                &name,
                "",
                "ok",
            )?;
            if context.json {
                output::print_json(&serde_json::json!({ "name": name, "removed": true }));
            } else {
                println!("user {name} removed; their sessions are ended");
            }
        }
        Command::Passwd {
            name,
            password_stdin,
        } => {
            if store.user(&name)?.is_none() {
                return Err(no_such_user(&name));
            }
            let password_hash = password::hash(&read_password(&name, password_stdin)?)?;
            if !store.set_password(&name, &password_hash)? {
                return Err(no_such_user(&name));
            }
            audit::record(
                store.as_ref(),
                now,
                &actor(),
                "user.passwd",
                &name,
                "",
                "ok",
            )?;
            if context.json {
                output::print_json(&serde_json::json!({ "name": name, "password_changed": true }));
            } else {
                println!("password of {name} changed; their sessions are ended");
            }
        }
    }
    Ok(0)
}

fn no_such_user(name: &str) -> Error {
    Error::NotFound(format!("no user `{name}` (see `cairn user list`)"))
}

/// The audit log's actor for this command: `cli:USER@HOST`.
pub(super) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        // SAFETY: getuid cannot fail and touches no memory.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }));
    format!("cli:{user}@{}", state::host())
}

/// The new password: one line of stdin with `--password-stdin`, else asked
/// twice on the terminal without echo.
fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .take(password::MAX_LENGTH as u64 + 2)
            .read_line(&mut text)
            .map_err(|e| Error::Usage(format!("cannot read the password from stdin: {e}")))?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text)
            .to_string();
        if text.is_empty() {
            return Err(Error::Usage(
                "--password-stdin: stdin holds no password (one line is read)".into(),
            ));
        }
        return Ok(text);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "no terminal to ask for the password on: pass it on stdin with --password-stdin".into(),
        ));
    }
    let first = prompt_hidden(&format!("New password for {name}: "))?;
    if let Some(problem) = password::problem(&first) {
        return Err(Error::Usage(problem));
    }
    let second = prompt_hidden("The same password again: ")?;
    if first != second {
        return Err(Error::Usage(
            "the two passwords differ: nothing changed".into(),
        ));
    }
    Ok(first)
}

/// Reads a line from the terminal on stdin with echo off.
fn prompt_hidden(prompt: &str) -> Result<String> {
    eprint_flush(prompt);
    let echo_off = EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo_off);
    eprint_flush("\n");
    read.map_err(|e| Error::Usage(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn eprint_flush(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Terminal echo turned off on stdin until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data, written by tcgetattr before it is read.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return EchoOff(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios for the same descriptor.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return EchoOff(None);
        }
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

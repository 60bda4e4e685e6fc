//! Restoring into a database server or a command: the dump streams from the
//! destination through decryption and decompression into the engine's client on
//! stdin (no temporary copy), with the stream's tail held back until both
//! hashes match, so damaged data never reaches a commit.

use std::sync::Arc;

use super::restore::RestoreReport;
use super::{Located, read};
use crate::config::{Job, SourceConfig};
use crate::keys;
use crate::progress::Progress;
use crate::source::external::{Program, Receiver};
use crate::{Error, Result, source};

#[derive(Debug, Clone)]
pub struct ServerRestoreOptions {
    pub target_url: String,
    pub dry_run: bool,
    pub force: bool,
    pub clean: bool,
    /// Read and check the whole artifact before streaming it into a target
    /// that is not restored in one transaction, or that `force` overwrites.
    pub verify_first: bool,
}

/// What a receiving program consumed.
struct Delivered {
    destination: String,
    plaintext_bytes: u64,
    /// The tail of the program's stdout.
    output: String,
    /// The tail of the program's stderr.
    messages: String,
}

/// Streams the artifact into `program`, committing only if it checks out.
/// `prefix_only`: the program reads just the start (a listing).
fn stream_into(
    located: &Located,
    key: &keys::DecryptKey,
    program: &Program,
    prefix_only: bool,
    progress: Arc<dyn Progress>,
) -> Result<Delivered> {
    let manifest = &located.manifest;
    let mut last_error = None;
    for (dest, _) in &located.copies {
        progress.start(
            &format!("restore {} from {}", manifest.id, dest.name()),
            Some(manifest.data.size),
        );
        let started = if prefix_only {
            program.reader_of_prefix()
        } else {
            program.receiver()
        };
        let mut receiver: Option<Receiver> = Some(started?);
        let result = read::read_artifact(
            dest.as_ref(),
            manifest,
            key,
            progress.clone(),
            &mut |stream| match receiver.as_mut() {
                Some(r) => r.feed(stream),
                None => Err(Error::Run("receiver already closed".into())),
            },
        );
        progress.finish();
        let Some(receiver) = receiver.take() else {
            return Err(Error::Run("receiver lost".into()));
        };
        match result {
            Ok(outcome) => {
                let (output, messages) = receiver.commit()?;
                return Ok(Delivered {
                    destination: dest.name().to_string(),
                    plaintext_bytes: outcome.plaintext.size,
                    output,
                    messages,
                });
            }
            Err(e) => {
                let messages = receiver.abort();
                let e = if messages.trim().is_empty() {
                    e
                } else {
                    Error::Run(format!(
                        "{e}; `{}` said: {}",
                        program.name(),
                        messages.trim()
                    ))
                };
                match e {
                    Error::Integrity { .. } | Error::Destination { .. }
                        if located.copies.len() > 1 =>
                    {
                        tracing::warn!(destination = %dest.name(), error = %e, "copy unusable, trying the next destination");
                        last_error = Some(e);
                    }
                    e => return Err(e),
                }
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::NotFound(format!("no copy of {} to read", manifest.id))))
}

/// Reads the first copy through every check, delivering nothing (dry runs).
fn check_first_copy(
    located: &Located,
    key: &keys::DecryptKey,
    progress: Arc<dyn Progress>,
) -> Result<(String, u64)> {
    let (dest, _) = located
        .copies
        .first()
        .ok_or_else(|| Error::NotFound("no readable copy".into()))?;
    let outcome = read::read_artifact(
        dest.as_ref(),
        &located.manifest,
        key,
        progress,
        &mut read::discard,
    )?;
    Ok((dest.name().to_string(), outcome.plaintext.size))
}

pub fn restore_to_server(
    job: &Job,
    located: &Located,
    options: &ServerRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let manifest = &located.manifest;
    let key = keys::decrypt_key(job)?;
    let target = source::server_restore_for(
        job,
        &manifest.source.kind,
        &manifest.source.facts,
        &options.target_url,
    )?;
    let mut checked_first = Vec::new();
    if options.verify_first && (options.force || !target.transactional()) && !options.dry_run {
        // --force may drop or overwrite live data, and not every client restores
        // in one transaction: prove the artifact and the key first.
        let (destination, bytes) = check_first_copy(located, &key, progress.clone())?;
        checked_first.push(format!(
            "checked the whole artifact ({bytes} bytes of dump, copy in `{destination}`) before touching {}",
            target.describe()
        ));
    }
    let prepared = target.prepare(options.force, options.clean, options.dry_run)?;
    let mut report = RestoreReport {
        job: job.name.clone(),
        id: manifest.id.clone(),
        destination: String::new(),
        target: target.describe(),
        dry_run: options.dry_run,
        safety_copy: None,
        plaintext_bytes: 0,
        actions: checked_first.into_iter().chain(prepared.actions).collect(),
    };
    if options.dry_run {
        // Read and check the whole artifact; list its contents when the format allows.
        let (destination, bytes) = match target.listing_program() {
            Some(listing) => {
                let delivered = stream_into(located, &key, &listing, true, progress)?;
                let entries: Vec<&str> = delivered
                    .output
                    .lines()
                    .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                    .collect();
                report.actions.push(format!(
                    "the dump holds {} entries, e.g. {}",
                    entries.len(),
                    entries
                        .iter()
                        .take(3)
                        .map(|l| l.trim())
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                (delivered.destination, delivered.plaintext_bytes)
            }
            None => check_first_copy(located, &key, progress)?,
        };
        report.destination = destination;
        report.plaintext_bytes = bytes;
        report.actions.push(format!(
            "checked the artifact ({bytes} bytes of dump): stored and plaintext SHA-256 match the manifest"
        ));
        report
            .actions
            .push(format!("would restore into {}", target.describe()));
        return Ok(report);
    }
    let program = target.receiver_program(options.clean);
    let delivered = stream_into(located, &key, &program, false, progress)
        .and_then(|d| target.check_messages(&d.messages).map(|()| d));
    match delivered {
        Ok(delivered) => {
            report.destination = delivered.destination;
            report.plaintext_bytes = delivered.plaintext_bytes;
            report.actions.push(format!(
                "restored {} bytes of dump into {}",
                delivered.plaintext_bytes,
                target.describe()
            ));
            Ok(report)
        }
        Err(e) => {
            if prepared.created {
                target.drop_created();
                tracing::info!(target = %target.describe(), "dropped the database created for the failed restore");
            }
            Err(e)
        }
    }
}

/// Restores a `command` job's artifact by piping it into the job's `restore` program.
/// A command is not transactional: unless `verify_first` is off, the whole
/// artifact is read and checked once before it is piped into the program.
pub fn restore_to_command(
    job: &Job,
    located: &Located,
    dry_run: bool,
    verify_first: bool,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let SourceConfig::Command {
        restore: Some(argv),
        env,
        ..
    } = &job.source
    else {
        return Err(Error::Usage(format!(
            "job `{}` has no `restore` command in its source; add one, or use `cairn cat {} | …`",
            job.name, job.name
        )));
    };
    let manifest = &located.manifest;
    let key = keys::decrypt_key(job)?;
    let program = Program::new(argv.iter()).inherit(env);
    let mut report = RestoreReport {
        job: job.name.clone(),
        id: manifest.id.clone(),
        destination: String::new(),
        target: format!("command `{}`", program.name()),
        dry_run,
        safety_copy: None,
        plaintext_bytes: 0,
        actions: Vec::new(),
    };
    if dry_run {
        let (destination, bytes) = check_first_copy(located, &key, progress)?;
        report.destination = destination;
        report.plaintext_bytes = bytes;
        report.actions.push(format!(
            "would pipe {} bytes into `{}`",
            bytes,
            program.name()
        ));
        return Ok(report);
    }
    if verify_first {
        let (destination, bytes) = check_first_copy(located, &key, progress.clone())?;
        report.actions.push(format!(
            "checked the whole artifact ({bytes} bytes, copy in `{destination}`) before starting `{}`",
            program.name()
        ));
    }
    let delivered = stream_into(located, &key, &program, false, progress)?;
    report.destination = delivered.destination;
    report.plaintext_bytes = delivered.plaintext_bytes;
    report.actions.push(format!(
        "piped {} bytes into `{}`",
        delivered.plaintext_bytes,
        program.name()
    ));
    Ok(report)
}

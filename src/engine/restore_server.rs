//! Restoring into a database server or a command: the dump streams from the
//! destination through decryption and decompression into the engine's client on
//! stdin (no temporary copy), with the stream's tail held back until both
//! hashes match, so damaged data never reaches a commit.

use std::sync::Arc;

use serde::Serialize;

use super::restore::{PlannedArtifact, RestoreReport};
use super::{Located, fallback, read};
use crate::config::{Job, SourceConfig};
use crate::keys;
use crate::progress::Progress;
use crate::source::external::{Program, Receiver};
use crate::source::server::{ServerRestore, TargetRequest, TargetStep};
use crate::{Error, Result, source};

#[derive(Debug, Clone)]
pub struct ServerRestoreOptions {
    pub target_url: String,
    pub force: bool,
    pub clean: bool,
    /// Read and check the whole artifact before streaming it into a target
    /// that is not restored in one transaction, or that `force` overwrites.
    pub verify_first: bool,
}

/// What restoring into a server will do, decided before anything is written:
/// a dry run renders it, `apply` does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRestorePlan {
    pub artifact: PlannedArtifact,
    /// The target, without credentials.
    pub target: String,
    /// What happens to the target before the dump streams in.
    pub step: TargetStep,
    /// The client drops the target's objects first (`--clean`).
    pub clean: bool,
    /// The whole artifact is read and checked before the target is touched.
    pub verify_first: bool,
}

impl ServerRestorePlan {
    /// What applying the plan would do, after the artifact was read and checked.
    pub fn intentions(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.artifact.copies_line());
        if self.verify_first {
            lines.push(format!(
                "would check the whole artifact before touching {}",
                self.target
            ));
        }
        lines.push(self.step.describe(false));
        lines.push(format!("would restore into {}", self.target));
        lines
    }
}

/// A plan with the target it was made for.
pub struct PlannedServerRestore {
    pub plan: ServerRestorePlan,
    target: Box<dyn ServerRestore>,
}

/// Decides what restoring `located` into `options.target_url` does. Only
/// reads the server: refuses a non-empty target without `force`, a missing
/// one this user may not create, `--clean` where it cannot work.
pub fn plan(
    job: &Job,
    located: &Located,
    options: &ServerRestoreOptions,
) -> Result<PlannedServerRestore> {
    let target = source::server_restore_for(
        job,
        &located.manifest.source.kind,
        &located.manifest.source.facts,
        &options.target_url,
    )?;
    let step = target.plan(TargetRequest {
        force: options.force,
        clean: options.clean,
    })?;
    // --force may drop or overwrite live data, and not every client restores
    // in one transaction: prove the artifact and the key first.
    let verify_first = options.verify_first && (options.force || !target.transactional());
    Ok(PlannedServerRestore {
        plan: ServerRestorePlan {
            artifact: PlannedArtifact::of(located),
            target: target.describe(),
            step,
            clean: options.clean,
            verify_first,
        },
        target,
    })
}

/// What a receiving program consumed.
struct Delivered {
    plaintext_bytes: u64,
    /// The tail of the program's stdout.
    output: String,
    /// The tail of the program's stderr.
    messages: String,
}

/// Streams the artifact into `program`, committing only if it checks out;
/// `prefer` is read first (the copy a check already proved good).
/// `prefix_only`: the program reads just the start (a listing).
fn stream_into(
    located: &Located,
    prefer: Option<&str>,
    key: &keys::DecryptKey,
    program: &Program,
    prefix_only: bool,
    progress: Arc<dyn Progress>,
) -> Result<fallback::Found<Delivered>> {
    let manifest = &located.manifest;
    fallback::first_good_copy_preferring(located, prefer, "restore", &progress, |dest| {
        let started = if prefix_only {
            program.reader_of_prefix()
        } else {
            program.receiver()
        };
        let mut receiver: Option<Receiver> = Some(started?);
        let result =
            read::read_artifact(
                dest,
                manifest,
                key,
                progress.clone(),
                &mut |stream| match receiver.as_mut() {
                    Some(r) => r.feed(stream),
                    None => Err(Error::Run("receiver already closed".into())),
                },
            );
        let Some(receiver) = receiver.take() else {
            return Err(Error::Run("receiver lost".into()));
        };
        match result {
            Ok(outcome) => {
                let (output, messages) = receiver.commit()?;
                Ok(Delivered {
                    plaintext_bytes: outcome.plaintext.size,
                    output,
                    messages,
                })
            }
            Err(e) => {
                let messages = receiver.abort();
                Err(if messages.trim().is_empty() {
                    e
                } else {
                    // The note keeps the error's kind: damage stays damage, and
                    // the next copy is still tried.
                    fallback::with_note(
                        e,
                        &format!("; `{}` said: {}", program.name(), messages.trim()),
                    )
                })
            }
        }
    })
}

/// Reads a good copy through every check, delivering nothing.
fn check_a_copy(
    located: &Located,
    key: &keys::DecryptKey,
    progress: Arc<dyn Progress>,
) -> Result<fallback::Found<u64>> {
    fallback::first_good_copy(located, "check", &progress, |dest| {
        read::read_artifact(
            dest,
            &located.manifest,
            key,
            progress.clone(),
            &mut read::discard,
        )
        .map(|outcome| outcome.plaintext.size)
    })
}

/// Reads the artifact through every check (listing its contents when the
/// format allows) and renders the plan: the server is not written (a dry run).
pub fn rehearse(
    job: &Job,
    located: &Located,
    planned: &PlannedServerRestore,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let plan = &planned.plan;
    let key = keys::decrypt_key(job)?;
    let mut actions = vec![plan.artifact.read_line()];
    let (destination, bytes, skipped) = match planned.target.listing_program() {
        Some(listing) => {
            let found = stream_into(located, None, &key, &listing, true, progress)?;
            let entries: Vec<&str> = found
                .value
                .output
                .lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .collect();
            actions.push(format!(
                "the dump holds {} entries, e.g. {}",
                entries.len(),
                entries
                    .iter()
                    .take(3)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            (
                found.destination,
                found.value.plaintext_bytes,
                found.skipped,
            )
        }
        None => {
            let found = check_a_copy(located, &key, progress)?;
            (found.destination, found.value, found.skipped)
        }
    };
    actions.extend(skipped.iter().map(fallback::skipped_line));
    actions.push(format!(
        "checked the artifact ({bytes} bytes of dump, copy in `{destination}`): stored and plaintext SHA-256 match the manifest"
    ));
    actions.extend(plan.intentions());
    Ok(RestoreReport {
        job: job.name.clone(),
        id: plan.artifact.id.clone(),
        destination,
        target: plan.target.clone(),
        dry_run: true,
        safety_copy: None,
        plaintext_bytes: bytes,
        actions,
    })
}

/// Carries out `planned`: checks the whole artifact first where the plan
/// says so, applies the target step, streams a good copy into the client, and
/// drops a database it created if the restore fails.
pub fn apply(
    job: &Job,
    located: &Located,
    planned: &PlannedServerRestore,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let plan = &planned.plan;
    let target = planned.target.as_ref();
    let key = keys::decrypt_key(job)?;
    let mut actions = Vec::new();
    let mut proven = None;
    if plan.verify_first {
        let found = check_a_copy(located, &key, progress.clone())?;
        actions.extend(found.skipped.iter().map(fallback::skipped_line));
        actions.push(format!(
            "checked the whole artifact ({} bytes of dump, copy in `{}`) before touching {}",
            found.value, found.destination, plan.target
        ));
        proven = Some(found.destination);
    }
    target.apply(&plan.step)?;
    actions.push(plan.step.describe(true));
    let program = target.receiver_program(plan.clean);
    let delivered = stream_into(located, proven.as_deref(), &key, &program, false, progress)
        .and_then(|found| target.check_messages(&found.value.messages).map(|()| found));
    match delivered {
        Ok(found) => {
            actions.extend(found.skipped.iter().map(fallback::skipped_line));
            actions.push(format!(
                "restored {} bytes of dump into {}",
                found.value.plaintext_bytes, plan.target
            ));
            Ok(RestoreReport {
                job: job.name.clone(),
                id: plan.artifact.id.clone(),
                destination: found.destination,
                target: plan.target.clone(),
                dry_run: false,
                safety_copy: None,
                plaintext_bytes: found.value.plaintext_bytes,
                actions,
            })
        }
        Err(e) => {
            if plan.step.creates() {
                target.drop_created();
                tracing::info!(target = %plan.target, "dropped the database created for the failed restore");
            }
            Err(e)
        }
    }
}

/// Plans and applies in one go (drills restore into their scratch database so).
pub fn restore_to_server(
    job: &Job,
    located: &Located,
    options: &ServerRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let planned = plan(job, located, options)?;
    apply(job, located, &planned, progress)
}

/// A restore of a `command` job's artifact: piping it into the job's `restore`
/// program. A command is not transactional: unless `verify_first` is off, the
/// whole artifact is read and checked once before it is piped into the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRestorePlan {
    pub artifact: PlannedArtifact,
    /// The program's argv, as the config gives it.
    pub argv: Vec<String>,
    /// Variables of cairn's environment the program also sees.
    #[serde(skip)]
    pub env: Vec<String>,
    pub verify_first: bool,
}

impl CommandRestorePlan {
    fn program(&self) -> Program {
        Program::new(self.argv.iter()).inherit(&self.env)
    }

    fn report(&self, dry_run: bool) -> RestoreReport {
        RestoreReport {
            job: self.artifact.job.clone(),
            id: self.artifact.id.clone(),
            destination: String::new(),
            target: format!("command `{}`", self.program().name()),
            dry_run,
            safety_copy: None,
            plaintext_bytes: 0,
            actions: Vec::new(),
        }
    }
}

/// Plans the restore of `located` into `job`'s `restore` command.
pub fn plan_command(
    job: &Job,
    located: &Located,
    verify_first: bool,
) -> Result<CommandRestorePlan> {
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
    Ok(CommandRestorePlan {
        artifact: PlannedArtifact::of(located),
        argv: argv.clone(),
        env: env.clone(),
        verify_first,
    })
}

/// Reads and checks a copy of the artifact and says what apply would pipe; the
/// program is not started.
pub fn rehearse_command(
    job: &Job,
    located: &Located,
    plan: &CommandRestorePlan,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let key = keys::decrypt_key(job)?;
    let mut report = plan.report(true);
    let found = check_a_copy(located, &key, progress)?;
    report
        .actions
        .extend(found.skipped.iter().map(fallback::skipped_line));
    report.destination = found.destination;
    report.plaintext_bytes = found.value;
    report.actions.push(format!(
        "would pipe {} bytes into `{}`",
        found.value,
        plan.program().name()
    ));
    Ok(report)
}

/// Pipes the artifact into the program (after checking it whole, per the plan).
pub fn apply_command(
    job: &Job,
    located: &Located,
    plan: &CommandRestorePlan,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let key = keys::decrypt_key(job)?;
    let program = plan.program();
    let mut report = plan.report(false);
    let mut proven = None;
    if plan.verify_first {
        let found = check_a_copy(located, &key, progress.clone())?;
        report
            .actions
            .extend(found.skipped.iter().map(fallback::skipped_line));
        report.actions.push(format!(
            "checked the whole artifact ({} bytes, copy in `{}`) before starting `{}`",
            found.value,
            found.destination,
            program.name()
        ));
        proven = Some(found.destination);
    }
    let found = stream_into(located, proven.as_deref(), &key, &program, false, progress)?;
    report
        .actions
        .extend(found.skipped.iter().map(fallback::skipped_line));
    let delivered = found.value;
    report.destination = found.destination;
    report.plaintext_bytes = delivered.plaintext_bytes;
    report.actions.push(format!(
        "piped {} bytes into `{}`",
        delivered.plaintext_bytes,
        program.name()
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::located_in;

    #[test]
    fn a_dry_run_says_what_the_server_restore_would_do() {
        let located = located_in(&["local", "offsite"]);
        let plan = ServerRestorePlan {
            artifact: PlannedArtifact::of(&located),
            target: "mysql://cairn@127.0.0.1:3306/shop".into(),
            step: TargetStep::Recreate {
                database: "shop".into(),
            },
            clean: true,
            verify_first: true,
        };
        insta::assert_snapshot!(plan.intentions().join("\n"));
    }

    #[test]
    fn a_command_job_without_restore_program_gets_no_plan() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::engine::testing::config(dir.path(), 10, "off");
        let error = plan_command(&config.jobs["app"], &located_in(&["a"]), true).unwrap_err();
        assert!(
            error.to_string().contains("has no `restore` command"),
            "{error}"
        );
    }
}

//! Every input in the fuzz corpus (`fuzz/corpus/TARGET`) and every crash the
//! fuzzers found (`fuzz/regressions/TARGET`) goes through the fuzz target's
//! body on each test run, so a fixed crash stays fixed without a fuzzer.

#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            let data = std::fs::read(&path).expect("read a corpus file");
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(path.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "fuzz/corpus/{target} is empty");
    assert!(
        failures.is_empty(),
        "{target}: these inputs fail (reproduce with `scripts/fuzz {target} FILE`): {failures:#?}"
    );
}

#[test]
fn config_inputs_never_panic_and_errors_name_a_line_inside() {
    replay("config", bodies::config);
}

#[test]
fn manifest_inputs_round_trip_and_no_made_up_signature_verifies() {
    replay("manifest", bodies::manifest);
}

#[test]
fn archives_never_write_outside_the_restore_target() {
    replay("tar_restore", bodies::tar_restore);
}

#[test]
fn stored_objects_decode_or_are_refused_without_panic() {
    replay("decrypt", bodies::decrypt);
}

#[test]
fn schedules_always_move_forward() {
    replay("cron", bodies::cron);
}

#[test]
fn retention_never_keeps_a_bad_artifact_nor_deletes_every_good_one() {
    replay("retention", bodies::retention);
}

#[test]
fn no_http_request_makes_the_server_fail() {
    replay("web_request", bodies::web_request);
}

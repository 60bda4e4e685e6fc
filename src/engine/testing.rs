//! Test support for engine unit tests: in-memory destinations behind the
//! fault-injection layer, and a job config that needs no server.

use std::sync::Arc;

use crate::config::Config;
use crate::store::Destination;
use crate::store::layers::fault::{FaultDestination, Faults};
use crate::store::memory::MemoryDestination;
use crate::{Error, Result};

/// An in-memory destination behind a fault layer, with the handles a test
/// needs: the objects (to look at) and the faults (to arm).
pub struct Faulty {
    pub memory: MemoryDestination,
    pub faults: Faults,
    pub destination: Arc<dyn Destination>,
}

impl Faulty {
    pub fn new(name: &str) -> Faulty {
        let memory = MemoryDestination::new(name);
        let faults = Faults::new();
        let destination = Arc::new(FaultDestination::new(
            Box::new(memory.clone()),
            faults.clone(),
        ));
        Faulty {
            memory,
            faults,
            destination,
        }
    }

    /// How many usable artifacts of job `app` it lists.
    pub fn artifacts(&self) -> usize {
        crate::store::catalog::list_job(&self.memory, "app")
            .map(|listing| listing.artifacts.len())
            .unwrap_or_default()
    }
}

/// A config in `dir` with one job `app` whose source prints `bytes` random
/// bytes, unencrypted, into destinations `a` and `b` (folders in `dir` that
/// the tests replace with [`Faulty`] ones), with its state store in `dir`.
pub fn config(dir: &std::path::Path, bytes: usize, verify: &str) -> Config {
    let text = format!(
        r#"[state]
path = "state.db"

[destinations.a]
kind = "fs"
path = "a"

[destinations.b]
kind = "fs"
path = "b"

[jobs.app]
source = {{ kind = "command", backup = ["sh", "-c", "head -c {bytes} /dev/urandom"] }}
destinations = ["a", "b"]
encryption = {{ kind = "none" }}
verify = "{verify}"
"#
    );
    let path = dir.join("cairn.toml");
    match Config::parse(&path, &text) {
        Ok(config) => config,
        Err(e) => panic!("test config: {e}"),
    }
}

/// An opener that hands out `destinations` by name.
pub fn opener(destinations: &[&Faulty]) -> impl Fn(&str) -> Result<Arc<dyn Destination>> + 'static {
    let destinations: Vec<Arc<dyn Destination>> =
        destinations.iter().map(|d| d.destination.clone()).collect();
    move |name| {
        destinations
            .iter()
            .find(|d| d.name() == name)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("unknown destination `{name}`")))
    }
}

//! The one connection of a `PostgresState`, driven by its own thread and
//! runtime. `StateStore` calls are synchronous and come from plain threads as
//! well as from inside tokio runtimes (where `block_on` would panic), so a
//! call hands the worker a closure over a channel and waits for its answer on
//! a std channel, with a deadline. A lost connection is opened again on the
//! next call; a call that does not finish in time drops the connection (its
//! state is unknown) and fails with a clear error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::tls::Tls;

/// Longest wait for a new connection (TCP, TLS, authentication).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one call (one statement or one transaction) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

type Job = Box<dyn FnOnce(Arc<Client>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type Fail = Box<dyn FnOnce(String) + Send>;

struct Request {
    job: Job,
    fail: Fail,
}

pub struct Worker {
    sender: mpsc::UnboundedSender<Request>,
}

impl Worker {
    pub fn start(config: tokio_postgres::Config, tls: Tls) -> std::io::Result<Worker> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("cairn-state-pg".into())
            .spawn(move || runtime.block_on(serve(config, tls, receiver)))?;
        Ok(Worker { sender })
    }

    /// Runs `f` on the connection and waits for its result; `Err` carries a
    /// message without secrets.
    pub fn call<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel::<Result<T, String>>(1);
        let fail_reply = reply.clone();
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let result = f(client).await.map_err(|e| describe(&e));
                let _ = reply.send(result);
            })
        });
        let fail: Fail = Box::new(move |message| {
            let _ = fail_reply.send(Err(message));
        });
        self.sender
            .send(Request { job, fail })
            .map_err(|_| "its connection thread has ended".to_string())?;
        match answer.recv_timeout(CONNECT_TIMEOUT + CALL_TIMEOUT + Duration::from_secs(2)) {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} s (the database server does not respond)",
                CALL_TIMEOUT.as_secs()
            )),
        }
    }
}

async fn serve(
    config: tokio_postgres::Config,
    tls: Tls,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut client: Option<Arc<Client>> = None;
    while let Some(request) = requests.recv().await {
        if client.as_ref().is_some_and(|c| c.is_closed()) {
            client = None;
        }
        let current = match &client {
            Some(c) => c.clone(),
            None => match tokio::time::timeout(CONNECT_TIMEOUT, connect(&config, &tls)).await {
                Ok(Ok(c)) => {
                    let c = Arc::new(c);
                    client = Some(c.clone());
                    c
                }
                Ok(Err(e)) => {
                    (request.fail)(format!("cannot connect: {}", describe(&e)));
                    continue;
                }
                Err(_) => {
                    (request.fail)(format!(
                        "cannot connect within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ));
                    continue;
                }
            },
        };
        if tokio::time::timeout(CALL_TIMEOUT, (request.job)(current))
            .await
            .is_err()
        {
            // Dropping the job drops its reply: the caller reports the timeout.
            client = None;
        }
    }
}

async fn connect(
    config: &tokio_postgres::Config,
    tls: &Tls,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = match tls {
        Tls::None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %describe(&e), "the state store's PostgreSQL connection ended");
                }
            });
            return Ok(client);
        }
        Tls::Rustls(make) => config.connect(make.clone()).await?,
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "the state store's PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// The server's message (tokio-postgres' own Display says only "db error"),
/// or the error and its causes, with registered secrets masked.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
                source = cause_of(source);
            }
            text
        }
    };
    crate::redact::redact(&text)
}

fn cause_of<'a>(
    e: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    e.and_then(std::error::Error::source)
}

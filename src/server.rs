//! Starting the service: bind, load (or first train) the model, serve, shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::fm::ModelArtifact;
use crate::pipeline::{self, JobError, TrainJob};
use crate::store::{Store, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The demo model could not be trained.
    #[error("training the demo model failed: {0}")]
    Demo(#[from] JobError),
    /// The database could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured model could not be served.
    #[error("{0}")]
    Model(String),
    /// The model named by `--model` or `server.model` is not there.
    #[error("model not found: {} (--model or server.model names an artifact folder or its model file)", .0.display())]
    ModelNotFound(PathBuf),
    /// Serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound, not yet running service.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    model_path: PathBuf,
    grace: Duration,
    poll: Duration,
    header_read_timeout: Duration,
}

/// Which model to serve, and whether to follow the registry afterwards.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    /// The artifact to load first.
    pub path: PathBuf,
    /// Follow the registry's active model from now on.
    pub follow_registry: bool,
}

/// Trains the demo model (ids and side features of the synthetic data) into the demo folder unless
/// a loadable one is there already.
fn ensure_demo_model(settings: &Settings) -> Result<PathBuf, ServerError> {
    let demo = settings.server.demo_model_dir.clone();
    if ModelArtifact::load(&demo).is_ok() {
        return Ok(demo);
    }
    tracing::info!(dir = %demo.display(), "no model configured: training the demo model on synthetic data");
    let mut demo_settings = settings.clone();
    demo_settings.data.format = crate::data::Format::Synthetic;
    // Side features too, so that cold-start recall from features works out of the box.
    demo_settings.data.features = crate::data::FeatureSet::Hybrid;
    demo_settings.train.out = demo.clone();
    let job = TrainJob::from_settings(&demo_settings)?;
    let summary = pipeline::run_train(&job, &mut |_| {})?;
    tracing::info!(version = %summary.version, "demo model trained");
    Ok(demo)
}

/// The model to serve: a file named in the settings (served as is), else the registry's active
/// model (followed as it changes), else the demo model, registered and activated so that the
/// registry is the one source of truth from then on.
pub async fn choose_model(
    settings: &Settings,
    store: Option<&Store>,
) -> Result<ModelChoice, ServerError> {
    let configured = &settings.server.model;
    if !configured.as_os_str().is_empty() {
        // Checked before binding: a service that said "listening" and then stopped looked alive.
        let file = crate::fm::artifact::model_file(configured);
        if !file.exists() {
            return Err(ServerError::ModelNotFound(file));
        }
        return Ok(ModelChoice {
            path: configured.clone(),
            follow_registry: false,
        });
    }
    let Some(store) = store else {
        let settings = settings.clone();
        let path = tokio::task::spawn_blocking(move || ensure_demo_model(&settings))
            .await
            .map_err(|e| ServerError::Model(e.to_string()))??;
        return Ok(ModelChoice {
            path,
            follow_registry: false,
        });
    };
    if let Some(active) = store.active_model().await? {
        // A file missing or changed since registration would serve another model than the
        // registry names (or none): stop with the reason, as for a model that does not load.
        crate::store::verify_artifact(&active).map_err(|e| {
            ServerError::Model(format!(
                "the registry's active model {} ({}) is refused: {e}; to serve another, run \
                 `fmrecall models rollback` (the one active before), `fmrecall models activate ID` \
                 (ids: `fmrecall models list`), or serve a file with `fmrecall serve --model DIR`",
                active.id, active.version
            ))
        })?;
        return Ok(ModelChoice {
            path: active.artifact_path,
            follow_registry: true,
        });
    }
    let owned = settings.clone();
    let demo = tokio::task::spawn_blocking(move || ensure_demo_model(&owned))
        .await
        .map_err(|e| ServerError::Model(e.to_string()))??;
    let artifact = ModelArtifact::load(&demo).map_err(|e| ServerError::Model(e.to_string()))?;
    let record = store
        .register_model(&artifact.meta, &crate::fm::artifact::model_file(&demo))
        .await?;
    let active = store.activate(record.id, "demo").await?;
    Ok(ModelChoice {
        path: active.artifact_path,
        follow_registry: true,
    })
}

impl Application {
    /// Opens the database (if configured), chooses the model and binds the configured address
    /// (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> Result<Application, ServerError> {
        let store = match settings.database.url.as_str() {
            "" => None,
            url => Some(Store::open(url).await?),
        };
        let choice = choose_model(settings, store.as_ref()).await?;
        Application::bind(settings, choice, store).await
    }

    /// Binds with an explicit model choice and database.
    pub async fn bind(
        settings: &Settings,
        choice: ModelChoice,
        store: Option<Store>,
    ) -> Result<Application, ServerError> {
        let model_path = choice.path.clone();
        let addr = settings.server.bind.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let mut server_settings = settings.server.clone();
        server_settings.model = model_path.clone();
        let state = AppState::new(
            server_settings,
            settings.index.clone(),
            settings.layers,
            store,
            choice.follow_registry,
        );
        Ok(Application {
            listener,
            state,
            model_path,
            grace: Duration::from_secs(settings.server.shutdown_grace_seconds),
            poll: Duration::from_secs_f64(settings.database.poll_seconds),
            header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for at most the grace
    /// period. The model loads in the background (`/readyz` says when); if it cannot be loaded at
    /// start, the service stops with the reason.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Application {
            listener,
            state,
            model_path,
            grace,
            poll,
            header_read_timeout,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = api::router(state.clone());
        let mut drained = stop_rx.clone();
        let server = serve_connections(listener, app, header_read_timeout, async move {
            let _ = drained.wait_for(|s| *s).await;
        });
        let loader = {
            let state = state.clone();
            async move {
                state.live.refresh_catalog().await;
                state.live.swap(model_path).await
            }
        };
        let serving = tokio::spawn(server);
        tokio::pin!(shutdown);
        let load_failed = tokio::select! {
            loaded = loader => loaded.err(),
            _ = &mut shutdown => { let _ = stop_tx.send(true); None }
        };
        if let Some(e) = load_failed {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(grace, serving).await;
            return Err(ServerError::Model(e.to_string()));
        }
        if !*stop_rx.borrow() {
            // Follow the registry and the catalog until shutdown.
            let watcher = {
                let state = state.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(poll).await;
                        state.live.sync_with_registry().await;
                    }
                })
            };
            shutdown.await;
            watcher.abort();
            let _ = stop_tx.send(true);
        }
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "shutting down: draining requests"
        );
        match tokio::time::timeout(grace, serving).await {
            Ok(Ok(result)) => result.map_err(ServerError::Io),
            Ok(Err(join)) => Err(ServerError::Io(std::io::Error::other(join))),
            Err(_) => {
                tracing::warn!("grace period over; closing remaining connections");
                Ok(())
            }
        }
    }
}

/// Accepts connections and serves each with hyper's HTTP/1.1, as `axum::serve` does, but with a
/// timer, so that a connection that has not sent a request's complete headers within
/// `header_read_timeout` (a slow or idle client) is closed instead of held for ever. When
/// `shutdown` completes it stops accepting, lets every connection finish the request in flight and
/// close, and returns once all have (the caller bounds the wait).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    // Dropping `closing` asks every connection to close; `open` is closed once every connection
    // task has dropped its receiver.
    let (closing, closing_rx) = tokio::sync::watch::channel(());
    let (open, open_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout((!header_read_timeout.is_zero()).then_some(header_read_timeout));
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        let still_open = open_rx.clone();
        tokio::spawn(async move {
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(still_open);
        });
    }
    drop(listener);
    drop(closing);
    drop(open_rx);
    open.closed().await;
    Ok(())
}

/// An accept error: a connection reset before it was accepted is skipped; anything else (out of
/// file descriptors above all) is logged and retried after a pause, so the loop never spins and
/// never stops while connections close and free descriptors.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// `fmrecall healthcheck`: GET /healthz on the configured address (0.0.0.0 becomes 127.0.0.1), for
/// container health checks that need no extra tools. Errors say what failed.
pub fn healthcheck(bind: &str, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = bind.replacen("0.0.0.0", "127.0.0.1", 1);
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: no address"))?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = String::new();
    let _ = stream.take(4096).read_to_string(&mut answer);
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "{addr}: unhealthy: {}",
            answer.lines().next().unwrap_or("no answer")
        ))
    }
}

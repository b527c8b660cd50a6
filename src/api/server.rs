//! The local API server (adapter: tonic's generated services served by hyper's HTTP/2 on a
//! unix socket, or TCP when `grpc_server.protocol` is `tcp`). Each connection's client→server
//! bytes pass through `authority::Rewrite`, so h2 accepts whatever `:authority` the client
//! sends (a socket path from grpc-go, grpc-java, grpc-python, grpcurl).
//!
//! The socket is created with mode 0660, a stale one (left by a crash) is replaced, and it is
//! removed on exit. A misbehaving client only ends its own connection.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use tonic::{Request, Response, Status};

use super::authority;
use super::convert;
use super::pb::services::containers as svc;
use super::pb::services::containers::containers_server::{Containers, ContainersServer};
use super::pb::services::sysinfo as sysinfo_svc;
use super::pb::services::sysinfo::system_info_server::{SystemInfo, SystemInfoServer};
use super::pb::types::sysinfo::ProjectInfo;
use crate::manager::{Manager, ManagerError};
use crate::runtime::Runtime;
use crate::supervisor::{Pulse, Shutdown, TaskResult};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("grpc socket {path} is in use by another process")]
    InUse { path: PathBuf },
    #[error("cannot listen on grpc socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unsupported grpc_server.protocol {0}, expected unix or tcp")]
    Protocol(String),
}

/// The gRPC status of a failed operation, as Kanto's daemon answers: Kanto returns plain
/// Go errors, which grpc-go sends as code Unknown with the error's text, so every refusal
/// and failure of an operation is `Unknown` with its text (Kanto's words where Kanto has
/// the same situation). Kanto's clients show the code and print the text; none of them
/// branches on another code (README, "Kanto compatibility of the local API").
pub fn failed(message: impl std::fmt::Display) -> Status {
    Status::unknown(message.to_string())
}

/// gRPC status for a manager error (`failed`).
pub fn status(e: ManagerError) -> Status {
    failed(e)
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

pub struct ContainersApi<R: Runtime> {
    manager: Arc<Manager<R>>,
}

fn container_message(c: &crate::model::Container) -> svc::ListContainerMessage {
    svc::ListContainerMessage {
        container: Some(convert::to_pb(c)),
    }
}

#[tonic::async_trait]
impl<R: Runtime> Containers for ContainersApi<R> {
    async fn create(
        &self,
        request: Request<svc::CreateContainerRequest>,
    ) -> Result<Response<svc::CreateContainerResponse>, Status> {
        // Kanto's daemon dereferences the missing container and crashes.
        let pb = request
            .into_inner()
            .container
            .ok_or_else(|| failed("container must be provided"))?;
        let c = convert::from_pb(&pb).map_err(failed)?;
        let created = self.manager.create(c, None).await.map_err(status)?;
        Ok(Response::new(svc::CreateContainerResponse {
            container: Some(convert::to_pb(&created)),
        }))
    }

    async fn get(
        &self,
        request: Request<svc::GetContainerRequest>,
    ) -> Result<Response<svc::GetContainerResponse>, Status> {
        // An unknown ID (or none) is not an error: the answer has no container, as
        // Kanto's (its clients say "not found" themselves).
        let id = request.into_inner().id;
        Ok(Response::new(svc::GetContainerResponse {
            container: self.manager.get(&id).ok().map(|c| convert::to_pb(&c)),
        }))
    }

    async fn list(
        &self,
        _: Request<svc::ListContainersRequest>,
    ) -> Result<Response<svc::ListContainersResponse>, Status> {
        Ok(Response::new(svc::ListContainersResponse {
            containers: self.manager.list().iter().map(convert::to_pb).collect(),
        }))
    }

    type ListStreamStream = Stream<svc::ListContainerMessage>;

    async fn list_stream(
        &self,
        _: Request<svc::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let all: Vec<_> = self
            .manager
            .list()
            .iter()
            .map(|c| Ok(container_message(c)))
            .collect();
        Ok(Response::new(stream::iter(all).boxed()))
    }

    async fn start(
        &self,
        request: Request<svc::StartContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let id = request.into_inner().id;
        self.manager.start(&id).await.map_err(status)?;
        Ok(Response::new(()))
    }

    type AttachStream = Stream<svc::AttachContainerResponse>;

    /// Output only: the container's stdout and stderr as they are logged, until it stops.
    /// leda-cm creates tasks without stdin (their output goes to the log driver), so
    /// `std_in` is refused.
    async fn attach(
        &self,
        request: Request<tonic::Streaming<svc::AttachContainerRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| failed("attach needs a first message with the container id"))?;
        let id = first.id.clone();
        let c = self.manager.get(&id).map_err(status)?;
        if first.std_in {
            return Err(failed(
                "attaching stdin is not supported: containers run without stdin",
            ));
        }
        if !c.is_active() {
            return Err(failed(format!(
                "container with id = {id} is not running - current status is {}",
                c.state.status
            )));
        }
        let dir = self.manager.log_dir(&c);
        let start = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || crate::logs::read_tail(&dir, Some(0))
        })
        .await
        .map_err(failed)?
        .map_err(failed)?
        .1;
        let manager = self.manager.clone();
        let follow = stream::unfold((start, false), move |(mut pos, done)| {
            let dir = dir.clone();
            let manager = manager.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let from = pos;
                    let dir = dir.clone();
                    let next =
                        tokio::task::spawn_blocking(move || crate::logs::follow(&dir, from)).await;
                    let entries = match next {
                        Ok(Ok((entries, next))) => {
                            pos = next;
                            entries
                        }
                        Ok(Err(e)) => return Some((Err(failed(e)), (pos, true))),
                        Err(e) => return Some((Err(failed(e)), (pos, true))),
                    };
                    if !entries.is_empty() {
                        let data: Vec<u8> = entries.iter().flat_map(|e| e.log.bytes()).collect();
                        let msg = svc::AttachContainerResponse {
                            id: id.clone(),
                            std_in: false,
                            write_committed_size: 0,
                            read_data: data,
                        };
                        return Some((Ok(msg), (pos, false)));
                    }
                    if !manager.get(&id).map(|c| c.is_active()).unwrap_or(false) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Ok(Response::new(follow.boxed()))
    }

    async fn stop(
        &self,
        request: Request<svc::StopContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        // An unknown ID before the options, as Kanto checks them.
        self.manager.get(&r.id).map_err(status)?;
        let opts = convert::stop_options(r.stop_options.as_ref()).map_err(failed)?;
        self.manager.stop(&r.id, opts).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn update(
        &self,
        request: Request<svc::UpdateContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.manager.get(&r.id).map_err(status)?;
        let opts = convert::update_options(r.update_options.as_ref()).map_err(failed)?;
        self.manager.update(&r.id, opts).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn restart(
        &self,
        request: Request<svc::RestartContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let id = request.into_inner().id;
        self.manager.restart(&id, None).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn pause(
        &self,
        request: Request<svc::PauseContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let id = request.into_inner().id;
        self.manager.pause(&id).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn unpause(
        &self,
        request: Request<svc::UnpauseContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let id = request.into_inner().id;
        self.manager.resume(&id).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn rename(
        &self,
        request: Request<svc::RenameContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.manager.rename(&r.id, &r.name).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<svc::RemoveContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        let id = r.id.as_str();
        let c = self.manager.get(id).map_err(status)?;
        // Kanto checks the stop options of every removal it goes on with (a live container
        // without force is refused first, by the manager).
        let opts = if r.force || !c.is_active() {
            let opts = convert::stop_options(r.stop_options.as_ref()).map_err(failed)?;
            if let Some(s) = opts.signal.as_deref() {
                if crate::manager::parse_signal(s).is_none() {
                    return Err(failed(format!("invalid signal = {s}")));
                }
            }
            opts
        } else {
            Default::default()
        };
        if r.force && r.stop_options.is_some() {
            // A graceful stop first, as the options ask; a stopped container is fine.
            match self.manager.stop(id, opts).await {
                Ok(_) | Err(ManagerError::State(_)) => {}
                Err(e) => return Err(status(e)),
            }
        }
        self.manager.remove(id, r.force).await.map_err(status)?;
        Ok(Response::new(()))
    }

    type LogsStream = Stream<svc::GetLogsResponse>;

    /// The json-file lines as Kanto sends them, across rotated files; `tail` < 0 is all.
    async fn logs(
        &self,
        request: Request<svc::GetLogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let r = request.into_inner();
        let tail = usize::try_from(r.tail).ok();
        let (entries, _) = self.manager.logs(&r.id, tail).await.map_err(status)?;
        let lines: Vec<_> = entries
            .iter()
            .map(|e| {
                let mut line = Vec::new();
                crate::logs::format::encode(&mut line, e.stream, e.log.as_bytes(), e.time);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                Ok(svc::GetLogsResponse { log: text })
            })
            .collect();
        Ok(Response::new(stream::iter(lines).boxed()))
    }
}

pub struct SystemInfoApi;

#[tonic::async_trait]
impl SystemInfo for SystemInfoApi {
    async fn project_info(
        &self,
        _: Request<()>,
    ) -> Result<Response<sysinfo_svc::ProjectInfoResponse>, Status> {
        Ok(Response::new(sysinfo_svc::ProjectInfoResponse {
            project_info: Some(project_info()),
        }))
    }
}

pub fn project_info() -> ProjectInfo {
    ProjectInfo {
        project_version: env!("CARGO_PKG_VERSION").to_string(),
        build_time: option_env!("LEDA_CM_BUILD_TIME").unwrap_or("").to_string(),
        api_version: super::API_VERSION.to_string(),
        git_commit: option_env!("LEDA_CM_GIT_COMMIT").unwrap_or("").to_string(),
    }
}

/// Routes a request to the service its path names.
struct Router<R: Runtime> {
    containers: ContainersServer<ContainersApi<R>>,
    sysinfo: SystemInfoServer<SystemInfoApi>,
}

impl<R: Runtime> Clone for Router<R> {
    fn clone(&self) -> Self {
        Router {
            containers: self.containers.clone(),
            sysinfo: self.sysinfo.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<R: Runtime> tower::Service<http::Request<hyper::body::Incoming>> for Router<R> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let path = req.uri().path();
        let containers = format!(
            "/{}/",
            <ContainersServer<ContainersApi<R>> as tonic::server::NamedService>::NAME
        );
        let sysinfo = format!(
            "/{}/",
            <SystemInfoServer<SystemInfoApi> as tonic::server::NamedService>::NAME
        );
        if path.starts_with(&containers) {
            let mut s = self.containers.clone();
            let path = path.to_string();
            Box::pin(async move {
                Ok(unknown_method(
                    &path,
                    tower::Service::call(&mut s, req).await?,
                ))
            })
        } else if path.starts_with(&sysinfo) {
            let mut s = self.sysinfo.clone();
            let path = path.to_string();
            Box::pin(async move {
                Ok(unknown_method(
                    &path,
                    tower::Service::call(&mut s, req).await?,
                ))
            })
        } else {
            // grpc-go's words for a service it does not serve.
            let service = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            Box::pin(async move {
                Ok(Status::unimplemented(format!("unknown service {service}")).into_http())
            })
        }
    }
}

/// tonic answers a method a service does not have with Unimplemented and no message;
/// grpc-go (so Kanto's daemon) says `unknown method M for service S`.
fn unknown_method(
    path: &str,
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let unimplemented = (tonic::Code::Unimplemented as i32).to_string();
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == unimplemented.as_bytes())
        && !headers.contains_key("grpc-message")
    {
        if let Some((service, method)) = path.trim_start_matches('/').split_once('/') {
            // grpc-message is percent-encoded: only printable ASCII other than `%` as is.
            let text: String = format!("unknown method {method} for service {service}")
                .bytes()
                .map(|b| {
                    if (0x20..0x7f).contains(&b) && b != b'%' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                headers.insert("grpc-message", v);
            }
        }
    }
    response
}

/// A bound listener (bound before capabilities are dropped and before READY).
pub enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

/// Binds the local API: a unix socket (mode 0660; a stale one replaced) or a TCP address.
pub fn bind(protocol: &str, address: &Path) -> Result<Listener, ServerError> {
    match protocol {
        "" | "unix" => {
            if address.exists() {
                if std::os::unix::net::UnixStream::connect(address).is_ok() {
                    return Err(ServerError::InUse {
                        path: address.to_path_buf(),
                    });
                }
                let _ = std::fs::remove_file(address);
            }
            if let Some(dir) = address.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                })?;
            }
            let std_listener =
                std::os::unix::net::UnixListener::bind(address).map_err(|source| {
                    ServerError::Bind {
                        path: address.to_path_buf(),
                        source,
                    }
                })?;
            std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o660)).map_err(
                |source| ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                },
            )?;
            std_listener
                .set_nonblocking(true)
                .map_err(|source| ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                })?;
            let listener = tokio::net::UnixListener::from_std(std_listener).map_err(|source| {
                ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                }
            })?;
            Ok(Listener::Unix(listener, address.to_path_buf()))
        }
        "tcp" => {
            let addr = address.to_string_lossy().to_string();
            let std_listener =
                std::net::TcpListener::bind(&addr).map_err(|source| ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                })?;
            std_listener
                .set_nonblocking(true)
                .map_err(|source| ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                })?;
            let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|source| {
                ServerError::Bind {
                    path: address.to_path_buf(),
                    source,
                }
            })?;
            Ok(Listener::Tcp(listener))
        }
        other => Err(ServerError::Protocol(other.to_string())),
    }
}

/// Serves the API until shutdown; then stops accepting and removes the socket.
pub async fn serve<R: Runtime>(
    listener: Listener,
    manager: Arc<Manager<R>>,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult {
    let router = Router {
        containers: ContainersServer::new(ContainersApi { manager }),
        sysinfo: SystemInfoServer::new(SystemInfoApi),
    };
    loop {
        pulse.beat();
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            p = pulse.wait() => {
                pulse.handle(p).await;
                continue;
            }
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(io) => {
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    // The client's frames pass through `authority::Rewrite` (any
                    // `:authority`, issue 18); the frame size it splits blocks at is the one
                    // advertised here.
                    let conn = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .max_frame_size(authority::MAX_FRAME_SIZE as u32)
                    .serve_connection(io, service);
                    if let Err(e) = conn.await {
                        log::debug!("grpc connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                log::warn!("accepting a grpc connection failed: {e}");
                if !pulse.sleep(Duration::from_millis(100), &mut shutdown).await {
                    break;
                }
            }
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

enum Io {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(
    listener: &Listener,
) -> std::io::Result<hyper_util::rt::TokioIo<authority::Rewrite<Io>>> {
    Ok(hyper_util::rt::TokioIo::new(authority::Rewrite::new(
        match listener {
            Listener::Unix(l, _) => Io::Unix(l.accept().await?.0),
            Listener::Tcp(l) => Io::Tcp(l.accept().await?.0),
        },
    )))
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pb::types::containers as pb;
    use crate::manager::fake::{manager, run, state_dir, FakeRuntime};
    use tonic::Code;

    /// Whatever the failure, a Kanto client gets code Unknown and the error's text (as
    /// grpc-go sends Kanto's plain Go errors): refusals leda-cm has and Kanto has not
    /// included (a name in use, an untrusted image, containerd away).
    #[test]
    fn every_manager_error_is_unknown_with_its_text() {
        use crate::runtime::RuntimeError;
        let cases = [
            ManagerError::NotFound("x".into()),
            ManagerError::NameNotFound("n".into()),
            ManagerError::AlreadyExists("x".into()),
            ManagerError::NameInUse {
                name: "n".into(),
                id: "x".into(),
            },
            ManagerError::Invalid(crate::model::validate::kanto(
                "container_name",
                "invalid container name format : -a",
            )),
            ManagerError::State("the container with id = x is already running".into()),
            ManagerError::Runtime(RuntimeError::Unavailable("connection refused".into())),
            ManagerError::Runtime(RuntimeError::NotFound {
                what: "snapshot x".into(),
            }),
            ManagerError::Runtime(RuntimeError::Pull {
                image: "i:1".into(),
                reason: "manifest unknown".into(),
            }),
            ManagerError::Untrusted(crate::trust::TrustError::Untrusted {
                image: "i:1".into(),
                reason: "no notation signature".into(),
            }),
            ManagerError::Io {
                id: "x".into(),
                message: "disk full".into(),
            },
        ];
        for e in cases {
            let text = e.to_string();
            let s = status(e);
            assert_eq!((s.code(), s.message()), (Code::Unknown, text.as_str()));
        }
    }

    #[test]
    fn an_unknown_method_is_named_as_grpc_go_names_it() {
        let answer = |status: &str, message: Option<&str>| {
            let mut r = http::Response::new(tonic::body::Body::default());
            r.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_str(status).unwrap());
            if let Some(m) = message {
                r.headers_mut()
                    .insert("grpc-message", http::HeaderValue::from_str(m).unwrap());
            }
            r
        };
        let cases = [
            (
                "/a.S/Nope",
                "12",
                None,
                Some("unknown method Nope for service a.S"),
            ),
            (
                "/a.S/N%o",
                "12",
                None,
                Some("unknown method N%25o for service a.S"),
            ),
            ("/a.S/Nope", "12", Some("kept"), Some("kept")),
            ("/a.S/Get", "0", None, None),
            ("/a.S/Get", "2", Some("x"), Some("x")),
        ];
        for (path, status, message, want) in cases {
            let r = unknown_method(path, answer(status, message));
            let got = r.headers().get("grpc-message").map(|v| v.to_str().unwrap());
            assert_eq!(got, want, "{path} {status}");
        }
    }

    fn req<T>(m: T) -> Request<T> {
        Request::new(m)
    }

    /// What a Kanto client observes: Get of an unknown ID is OK with no container; every
    /// failed operation is code Unknown with Kanto's text.
    #[test]
    fn answers_are_kantos() {
        let dir = state_dir("api-kanto");
        run(async {
            let rt = FakeRuntime::new().with_image("i:1");
            let api = ContainersApi {
                manager: manager(rt, &dir),
            };
            let create = |name: &str, image: &str| svc::CreateContainerRequest {
                container: Some(pb::Container {
                    name: name.into(),
                    image: Some(pb::Image {
                        name: image.into(),
                        decrypt_config: None,
                    }),
                    ..Default::default()
                }),
            };
            let created = api
                .create(req(create("a", "i:1")))
                .await
                .unwrap()
                .into_inner()
                .container
                .unwrap();
            let id = created.id.clone();

            // Get: the container, or OK without one.
            for (case, get_id, present) in [
                ("known", id.as_str(), true),
                ("unknown", "nope", false),
                ("no ID", "", false),
            ] {
                let got = api
                    .get(req(svc::GetContainerRequest { id: get_id.into() }))
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e:?}"))
                    .into_inner();
                assert_eq!(got.container.is_some(), present, "{case}");
            }

            let stop = |id: &str, timeout: i64, signal: &str| svc::StopContainerRequest {
                id: id.into(),
                stop_options: Some(pb::StopOptions {
                    timeout,
                    force: false,
                    signal: signal.into(),
                }),
            };
            let remove = |id: &str, force: bool, signal: &str| svc::RemoveContainerRequest {
                id: id.into(),
                force,
                stop_options: Some(pb::StopOptions {
                    timeout: 0,
                    force,
                    signal: signal.into(),
                }),
            };
            let mut bad_mode = create("b", "i:1");
            bad_mode
                .container
                .as_mut()
                .unwrap()
                .host_config
                .get_or_insert_with(Default::default)
                .network_mode = "overlay".into();
            let results: Vec<(&str, Result<(), Status>, String)> = vec![
                (
                    "start unknown",
                    api.start(req(svc::StartContainerRequest { id: "nope".into() }))
                        .await
                        .map(|_| ()),
                    "no such container with id = nope exists".into(),
                ),
                (
                    "start with no ID",
                    api.start(req(svc::StartContainerRequest { id: String::new() }))
                        .await
                        .map(|_| ()),
                    "no such container with id =  exists".into(),
                ),
                (
                    "stop created",
                    api.stop(req(stop(&id, 0, ""))).await.map(|_| ()),
                    format!(
                        "cannot perform stop operation for container: {id}, with state: Created"
                    ),
                ),
                (
                    "stop with a negative timeout",
                    api.stop(req(stop(&id, -3, ""))).await.map(|_| ()),
                    "the timeout = -3 shouldn't be negative".into(),
                ),
                (
                    "stop unknown with a negative timeout",
                    api.stop(req(stop("nope", -3, ""))).await.map(|_| ()),
                    "no such container with id = nope exists".into(),
                ),
                (
                    "remove with a bad signal",
                    api.remove(req(remove(&id, true, "SIGNOPE")))
                        .await
                        .map(|_| ()),
                    "invalid signal = SIGNOPE".into(),
                ),
                (
                    "pause created",
                    api.pause(req(svc::PauseContainerRequest { id: id.clone() }))
                        .await
                        .map(|_| ()),
                    format!("container with id = {id} is not running - current status is Created"),
                ),
                (
                    "unpause created",
                    api.unpause(req(svc::UnpauseContainerRequest { id: id.clone() }))
                        .await
                        .map(|_| ()),
                    format!("container id = {id} is not paused - cannot unpause it "),
                ),
                (
                    "rename unknown",
                    api.rename(req(svc::RenameContainerRequest {
                        id: "nope".into(),
                        name: "x".into(),
                    }))
                    .await
                    .map(|_| ()),
                    "no such container with id = nope exists".into(),
                ),
                (
                    "create with a bad name",
                    api.create(req(create("a b", "i:1"))).await.map(|_| ()),
                    "invalid container name format : a b".into(),
                ),
                (
                    "create without an image",
                    api.create(req(create("b", ""))).await.map(|_| ()),
                    "the containers image configuration is invalid".into(),
                ),
                (
                    "create with an unknown network mode",
                    api.create(req(bad_mode)).await.map(|_| ()),
                    "unsupported network mode overlay".into(),
                ),
                (
                    "create with a name in use (leda-cm's own refusal)",
                    api.create(req(create("a", "i:1"))).await.map(|_| ()),
                    format!("container name a is already used by container {id}"),
                ),
            ];
            for (case, result, text) in results {
                let e = result.expect_err(case);
                assert_eq!(
                    (e.code(), e.message()),
                    (Code::Unknown, text.as_str()),
                    "{case}"
                );
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

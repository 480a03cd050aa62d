//! A real nginx in front of a server, in its own temporary directory: configuration, logs, pid
//! file and temp paths, nothing under /var. It runs in the foreground without a master process
//! (`master_process off`), so one child is the whole nginx and killing it on drop leaves
//! nothing behind, as root or not.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::scratch_dir;
use super::wire::Conn;

/// How long [`Nginx::start`] waits for its proxy to answer.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// The nginx binary: Debian's path, else whatever `nginx` is on `PATH`.
fn nginx_binary() -> PathBuf {
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

/// A free port right now (bound to 127.0.0.1:0, then closed). Another process may take it
/// before nginx binds it; [`Nginx::run`] retries when that happens.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A running nginx; killed, and its directory removed, on drop.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Nginx {
    /// nginx as a reverse proxy in front of `upstream` (`host:port`), configured as a user
    /// would (`proxy_pass`, HTTP/1.1 upstream, no buffering directives). Returns once a request
    /// through it came back from this very nginx.
    pub fn start(upstream: &str) -> Nginx {
        Nginx::run("nginx", READY_LIMIT, 256, |_, port, token| {
            format!(
                r#"    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Test-Proxy "{token}" always;
        }}
    }}
"#
            )
        })
    }

    /// Runs nginx in a scratch directory named after `what`, listening on 127.0.0.1:`port`,
    /// with `worker_connections` and the `http {}` block contents `http(dir, port, token)` makes
    /// (after the block's private temp paths). Those must add the header `X-Test-Proxy: TOKEN`
    /// to every answer (`add_header ... always`): a request that comes back with it (within
    /// `ready_within`) shows that this very nginx is up. Retries on another port when someone
    /// took the probed one first.
    pub fn run(
        what: &str,
        ready_within: Duration,
        worker_connections: usize,
        http: impl Fn(&Path, u16, &str) -> String,
    ) -> Nginx {
        let dir = scratch_dir(what);
        let token = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for attempt in 1..=5 {
            let port = free_port();
            let config = format!(
                r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
lock_file {dir}/nginx.lock;
error_log {dir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}}}
"#,
                dir = dir.display(),
                http = http(&dir, port, &token),
            );
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config).expect("write nginx.conf");
            let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
            let child = Command::new(nginx_binary())
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot run nginx ({err}); it is required for the proxy tests: \
                         apt-get install nginx (.ci/run installs it)"
                    )
                });
            let mut nginx = Nginx {
                child,
                dir: dir.clone(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match nginx.wait_ready(&token, ready_within) {
                Ok(()) => return nginx,
                Err(log) if log.contains("Address already in use") && attempt < 5 => {
                    // Someone took the port between our probe and nginx's bind: try another.
                    let _ = nginx.child.kill();
                    let _ = nginx.child.wait();
                    nginx.dir = PathBuf::new(); // the next attempt reuses the directory
                }
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until a request to this nginx (recognized by its `X-Test-Proxy` token) comes
    /// back; `Err` with the logs if nginx exits or `limit` passes.
    fn wait_ready(&mut self, token: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited ({status}):\n{}", self.log()));
            }
            if let Ok(mut conn) = Conn::try_open(self.addr, Duration::from_secs(5)) {
                let _ = conn.try_send(
                    b"GET /nginx-readiness-probe HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
                );
                conn.finish();
                let answer = String::from_utf8_lossy(conn.unread());
                if answer.contains(&format!("X-Test-Proxy: {token}")) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!(
            "nginx did not answer within {limit:?}:\n{}",
            self.log()
        ))
    }

    /// nginx's error log and stderr.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("error.log"), read("stderr.log"))
    }

    /// nginx's access log, where the configuration writes one to `DIR/access.log`.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

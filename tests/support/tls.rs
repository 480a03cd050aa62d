//! HTTPS at test time: a certificate authority and server certificates made by the test
//! (rcgen), nginx terminating TLS in front of a plain server, and Debian's tinyproxy as a real
//! forward proxy.

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

use super::nginx::Nginx;
use super::scratch_dir;

/// A test CA: its certificate in `ca.pem`, and what it needs to sign server certificates.
pub struct Ca {
    pub dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

/// A server certificate and its key, as PEM files.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `DIR/ca.pem`.
    pub fn new(name: &str) -> Ca {
        let dir = scratch_dir(&format!("ca-{name}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tinyserve test CA {name}"));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write ca.pem");
        Ca { dir, cert, key }
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `names` (IP addresses become IP SANs); `expired` makes one
    /// whose validity ended in 2021.
    pub fn issue(&self, file: &str, names: &[&str], expired: bool) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let paths = ServerCert {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&paths.cert, cert.pem()).expect("write certificate");
        std::fs::write(&paths.key, key.serialize_pem()).expect("write key");
        paths
    }
}

/// A free port right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// nginx terminating TLS with `cert` in front of the plain server at `upstream` (`host:port`),
/// without buffering (streams pass as they come); `https` is its TLS address.
pub struct HttpsFront {
    pub nginx: Nginx,
    pub https: SocketAddr,
}

impl HttpsFront {
    pub fn start(upstream: &str, cert: &ServerCert) -> HttpsFront {
        let tls_port = Cell::new(0);
        let nginx = Nginx::run(
            "https-front",
            Duration::from_secs(20),
            1024,
            |dir, port, token| {
                tls_port.set(free_port());
                format!(
                    r#"    log_format conns '$connection $request $status';
    access_log {dir}/access.log conns;
    upstream backend {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ add_header X-Test-Proxy "{token}" always; return 204; }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            add_header X-Test-Proxy "{token}" always;
        }}
    }}
"#,
                    dir = dir.display(),
                    tls = tls_port.get(),
                    cert = cert.cert.display(),
                    key = cert.key.display(),
                )
            },
        );
        let https = SocketAddr::from(([127, 0, 0, 1], tls_port.get()));
        HttpsFront { nginx, https }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }
}

/// Debian's tinyproxy as a forward proxy on 127.0.0.1, in its own directory, with its log at
/// Connect level (every `CONNECT` it is asked for). Killed on drop.
pub struct Tinyproxy {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Tinyproxy {
    /// `extra` is added to the configuration (such as `ConnectPort 443`, or `BasicAuth u p`).
    pub fn start(extra: &str) -> Tinyproxy {
        let dir = scratch_dir("tinyproxy");
        let port = free_port();
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{dir}/tinyproxy.log\"\n\
                 LogLevel Connect\nPidFile \"{dir}/tinyproxy.pid\"\nMaxClients 100\n\
                 Allow 127.0.0.1\n{extra}\n",
                dir = dir.display()
            ),
        )
        .expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run tinyproxy ({err}): apt-get install tinyproxy (.ci/run does)")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < ready, "tinyproxy did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tinyproxy { child, dir, addr }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }

    /// How many `CONNECT`s to `target` (`host:port`) it logged.
    pub fn connects_to(&self, target: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(&format!("CONNECT {target}")))
            .count()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

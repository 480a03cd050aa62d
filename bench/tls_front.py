"""The HTTPS side of the fan-out benchmark (scenario `fanout-tls`): a certificate authority
made at bench time with the `openssl` command, and nginx terminating TLS in front of the mock
upstream, as a TLS-terminating load balancer sits in front of a real API.

- `make_certificates(dir)`: `ca.pem` (the CA the servers under test trust, through
  `SSL_CERT_FILE`), `server.pem` / `server.key` (for 127.0.0.1, an IP SAN, signed by it) and
  `other-ca.pem` (a CA that signed nothing here: a server trusting only it must fail).
  ECDSA P-256 keys, as most public CAs issue today.
- `TlsFront`: nginx with 2 worker processes (one per core; the servers under test, the mock
  upstream and wrk share the same 2 cores), up to 8,192 connections per worker, keep-alive
  without a request limit on both sides (to the clients, and to the mock upstream: a cache
  of 1,024 idle connections per worker), and an access log of `$connection
  $connection_requests $ssl_session_reused $status` per request, from which `counts()` tells
  how many calls came in and how many TLS handshakes were made (a connection's first request;
  `r` when the handshake resumed a session).
"""
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder):
    """Writes ca.pem, other-ca.pem, server.pem and server.key into `folder`; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        openssl("req", "-x509", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                "-days", "7", "-subj", f"/CN=tinyserve bench {name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    openssl("req", "-new", *KEY, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "7", "-extfile", "server.ext",
            cwd=folder)
    return folder


CONFIG = """daemon off;
{user}worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format calls '$connection $connection_requests $ssl_session_reused $status';
    access_log {dir}/access.log calls;
    upstream mock {{
        server {upstream};
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class TlsFront:
    """nginx terminating TLS on 127.0.0.1:`port` in front of `upstream` (`http://host:port`),
    with its certificates, configuration and logs in `folder`. `start_process(name, argv)`
    starts a process the harness can stop (its Process class)."""

    def __init__(self, folder, upstream, port, start_process, workers=2):
        self.dir = make_certificates(folder)
        self.ca = self.dir / "ca.pem"
        self.other_ca = self.dir / "other-ca.pem"
        self.url = f"https://127.0.0.1:{port}"
        self.log = self.dir / "access.log"
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(CONFIG.format(user=user, workers=workers, dir=self.dir, port=port,
                                      upstream=upstream.removeprefix("http://")))
        self.proc = start_process("nginx-tls", [NGINX, "-p", str(self.dir), "-e",
                                                str(self.dir / "error.log"), "-c", str(conf)])
        self.wait_ready()

    def wait_ready(self, timeout=20.0):
        context = ssl.create_default_context(cafile=str(self.ca))
        end = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/item/0", timeout=2,
                                            context=context) as reply:
                    if reply.status == 200:
                        return
            except urllib.error.HTTPError:
                return  # an answer through TLS, whatever its status
            except OSError as err:
                if time.time() > end or self.proc.proc.poll() is not None:
                    raise RuntimeError(f"nginx (TLS) not ready: {err}; see {self.dir}/error.log")
                time.sleep(0.1)

    def offset(self):
        """Where the access log ends now: `counts(since=...)` reads what follows."""
        return self.log.stat().st_size if self.log.exists() else 0

    def counts(self, since=0):
        """Calls, TLS handshakes (connections whose first request is among them), and how many
        of those handshakes resumed a session, in the access log from byte `since`."""
        with open(self.log, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        calls = handshakes = resumed = 0
        statuses = {}
        for line in lines:
            fields = line.split()
            if len(fields) != 4:
                continue
            calls += 1
            statuses[fields[3]] = statuses.get(fields[3], 0) + 1
            if fields[1] == "1":
                handshakes += 1
                resumed += fields[2] == "r"
        return {"calls": calls, "tls_handshakes": handshakes, "tls_resumed": resumed,
                "statuses": statuses}

    def stop(self):
        self.proc.stop()

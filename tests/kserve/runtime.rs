//! The ServingRuntime's container, run exactly as KServe and Kubernetes would run it: its
//! `command` and `args` with `{{.Name}}` filled in from the InferenceService (KServe's template)
//! and `$(VAR)` from the container's environment, the InferenceService's `env` merged over the
//! runtime's (Kubernetes' expansion), Knative's `PORT`, and a temporary folder standing in for
//! `/mnt/models` where the storage initializer would have put the model. Only two things are
//! rewritten: the executable (`tinyserve`, the binary under test) and `/mnt/models`; the port is
//! the one the manifest declares, 8080, unless another process on this machine holds it (then a
//! free port, and the test says so on stdout).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::scratch_dir;
use crate::support::serve::assert_refuses_to_serve;
use crate::support::{agent, send};

use super::{yaml_documents, BOUND};

/// Tests that run the runtime on its declared port take turns.
static PORT_8080: Mutex<()> = Mutex::new(());

/// Kubernetes' `$(VAR)` expansion of a command or argument: a defined variable is replaced, an
/// undefined one left as written, `$$` is a literal `$`.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = rest
            .strip_prefix("$(")
            .and_then(|r| r.split_once(')'))
            .filter(|(name, _)| env.contains_key(*name))
        {
            out.push_str(&env[name]);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// KServe's template fields in a runtime's arguments (`{{.Name}}`, `{{.Namespace}}`); any other
/// template fails the test, so a new one in the manifest cannot pass unsubstituted.
fn fill_template(text: &str, name: &str) -> String {
    let filled = text
        .replace("{{.Name}}", name)
        .replace("{{.Namespace}}", "default");
    assert!(
        !filled.contains("{{"),
        "unknown KServe template in {text:?}"
    );
    filled
}

/// `[{name, value}]` as a map; `valueFrom` is not expected in these manifests.
fn env_map(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {e}: expected a literal value"));
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                value.to_string(),
            )
        })
        .collect()
}

/// What the kubelet would execute for the InferenceService in `isvc_file`: argv (the
/// executable as written), environment, and the declared container port.
struct Launch {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    port: u16,
    name: String,
}

fn launch(isvc_file: &str) -> Launch {
    let runtime = &yaml_documents("deploy/kserve/servingruntime.yaml")[0];
    let isvc = &yaml_documents(isvc_file)[0];
    let name = isvc["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    assert_eq!(
        isvc["spec"]["predictor"]["model"]["runtime"], runtime["metadata"]["name"],
        "{isvc_file} names the runtime"
    );
    let container = &runtime["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a declared containerPort");
    // KServe merges the predictor's env over the runtime container's; Knative adds PORT.
    let mut env = env_map(&container["env"]);
    env.extend(env_map(&isvc["spec"]["predictor"]["model"]["env"]));
    env.insert("PORT".into(), port.to_string());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let argv = strings(&container["command"])
        .into_iter()
        .chain(strings(&container["args"]))
        .map(|a| expand(&fill_template(&a, &name), &env))
        .collect();
    Launch {
        argv,
        env,
        port,
        name,
    }
}

/// A running runtime container; killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Runs `launch` with `models` for `/mnt/models`, on the declared port when it is free;
/// `while_loading` gets the address once the process runs, before its `listening on` line.
fn start(launch: &Launch, models: &Path, while_loading: impl FnOnce(SocketAddr)) -> Running {
    let mut argv = launch.argv.clone();
    assert_eq!(
        argv[0], "tinyserve",
        "the runtime runs the image's tinyserve"
    );
    let declared = format!("--port={}", launch.port);
    assert!(
        argv.contains(&declared),
        "the arguments name the declared port literally: {argv:?}"
    );
    assert!(
        argv.iter().any(|a| a.contains("/mnt/models")),
        "the arguments name /mnt/models literally: {argv:?}"
    );
    if TcpListener::bind(("0.0.0.0", launch.port)).is_err() {
        let free = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        println!(
            "port {} is taken on this machine: the runtime runs on {free} instead (the only \
             rewrite besides the executable and /mnt/models)",
            launch.port
        );
        for arg in &mut argv {
            if *arg == declared {
                *arg = format!("--port={free}");
            }
        }
    }
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("/mnt/models", &models.display().to_string()))
        .collect();
    let port = argv
        .iter()
        .find_map(|a| a.strip_prefix("--port=")?.parse().ok())
        .expect("a --port argument");
    spawn(&argv, &launch.env, |_| {
        while_loading(SocketAddr::from(([127, 0, 0, 1], port)))
    })
}

/// Runs `argv` (after its executable name) with exactly the environment `env` (plus `PATH`,
/// `HOME` and the test's ONNX Runtime cache) and waits for its `listening on` line.
fn spawn(
    argv: &[String],
    env: &BTreeMap<String, String>,
    while_loading: impl FnOnce(&Running),
) -> Running {
    println!("running: tinyserve {}", argv[1..].join(" "));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyserve"))
        .args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(std::env::var("TINYSERVE_CACHE_DIR").map(|d| ("TINYSERVE_CACHE_DIR", d)))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tinyserve");
    let stderr = std::sync::Arc::new(Mutex::new(String::new()));
    if let Some(pipe) = child.stderr.take() {
        let stderr = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut text) = stderr.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
    }
    let mut running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stderr,
    };
    while_loading(&running);
    let line = rx
        .recv_timeout(BOUND)
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let port: u16 = line
        .trim()
        .strip_prefix("listening on http://0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "expected `listening on http://0.0.0.0:PORT`, got {line:?}; stderr:\n{}",
                running.stderr()
            )
        });
    running.addr = SocketAddr::from(([127, 0, 0, 1], port));
    running
}

fn get(running: &Running, path: &str) -> (u16, Value) {
    let reply = send(
        &agent(BOUND),
        "GET",
        &format!("http://{}{path}", running.addr),
        &[],
        b"",
    );
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

fn post(running: &Running, path: &str, body: &Value) -> (u16, Value) {
    let reply = send(
        &agent(BOUND),
        "POST",
        &format!("http://{}{path}", running.addr),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

#[test]
fn the_serving_runtime_serves_a_renamed_onnx_file_as_the_inference_service() {
    let _turn = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    let launch = launch("deploy/kserve/inferenceservice.yaml");
    assert_eq!(launch.port, 8080);
    // What the storage initializer leaves for `storageUri: .../iris.onnx` under another name.
    let models = scratch_dir("kserve-mnt-models");
    std::fs::copy(
        crate::support::repo("models/iris.onnx"),
        models.join("classifier-2024-06.onnx"),
    )
    .expect("copy iris.onnx");
    let server = start(&launch, &models, |_| {});
    let name = &launch.name;

    assert_eq!(
        get(&server, "/v2/health/live"),
        (200, json!({"live": true}))
    );
    assert_eq!(
        get(&server, "/v2/health/ready"),
        (200, json!({"ready": true}))
    );
    assert_eq!(
        get(&server, &format!("/v2/models/{name}/ready")),
        (200, json!({"name": name, "ready": true}))
    );
    let (status, _) = get(&server, "/v2/models/classifier-2024-06");
    assert_eq!(status, 404, "served under the InferenceService's name only");
    for case in fixture("iris") {
        let rows = case["input"].as_array().map_or(0, Vec::len);
        let data: Vec<Value> = case["input"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .collect();
        let body = json!({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": data}]});
        let (status, answer) = post(&server, &format!("/v2/models/{name}/infer"), &body);
        assert_eq!(status, 200, "{answer}");
        let label = answer["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["name"] == "label")
            .map(|o| o["data"].clone());
        assert_eq!(label, Some(case["label"].clone()), "{answer}");
    }
    assert!(
        server.stderr().contains("\"model\":\"iris\""),
        "JSON access lines name the model: {}",
        server.stderr()
    );
    let _ = std::fs::remove_dir_all(&models);
}

/// Status and JSON body of `GET path`, or `None` while nothing answers.
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, Value)> {
    let mut response = agent(BOUND)
        .get(&format!("http://{addr}{path}"))
        .call()
        .ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[test]
fn the_serving_runtime_answers_probes_while_loading_then_serves_a_decoder_folder() {
    let _turn = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    let launch = launch("deploy/kserve/inferenceservice-decoder.yaml");
    assert!(
        launch.argv.contains(&"--workers=64".to_string()),
        "the InferenceService's env reaches $(TINYSERVE_WORKERS): {:?}",
        launch.argv
    );
    // storageUri names the folder: its files land directly in /mnt/models. One file is a named
    // pipe, so loading waits, however long, until the test writes it: the probes are checked
    // while the model is loading, by order, not by timing.
    let models = scratch_dir("kserve-mnt-decoder");
    let source = crate::support::repo("models/tinychat");
    let held_back = "generation_config.json";
    for entry in std::fs::read_dir(&source).expect("tinychat") {
        let path = entry.expect("entry").path();
        let file = path.file_name().expect("a name").to_owned();
        if path.is_file() && file != held_back {
            std::fs::copy(&path, models.join(file)).expect("copy");
        }
    }
    let pipe = models.join(held_back);
    let made = Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", pipe.display());
    let name = launch.name.clone();
    let server = start(&launch, &models, |addr| {
        assert!(
            crate::support::process::wait_until(BOUND, || try_get(addr, "/v2/health/live")
                .is_some_and(|(status, _)| status == 200)),
            "/v2/health/live should answer 200 while the model loads"
        );
        let (status, body) = try_get(addr, "/v2/health/ready").expect("an answer");
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("not_ready")),
            "{body}"
        );
        let (status, _) = try_get(addr, &format!("/v2/models/{name}/ready")).expect("an answer");
        assert_eq!(status, 503);
        assert_eq!(try_get(addr, "/healthz").map(|r| r.0), Some(200));
        assert_eq!(try_get(addr, "/readyz").map(|r| r.0), Some(503));
        // Now let loading finish.
        let text = std::fs::read(source.join(held_back)).expect("read the real file");
        std::fs::write(&pipe, text).expect("write the named pipe");
    });
    assert_eq!(get(&server, "/v2/health/ready").0, 200);
    assert_eq!(
        get(&server, &format!("/v2/models/{name}/ready")).0,
        404,
        "a decoder folder is served through /v1 only"
    );
    let (status, listed) = get(&server, "/v1/models");
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], json!(name), "{listed}");
    let (status, answer) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&models);
}

#[test]
fn model_name_refuses_a_folder_of_several_models_naming_them() {
    let mut command = crate::support::process::tinyserve();
    command.args([
        "serve",
        "--port",
        "0",
        "--model-name",
        "iris",
        "--models",
        "models",
    ]);
    let out = assert_refuses_to_serve(command, "--model-name serves one model");
    assert!(
        out.stderr
            .contains("expected one model, found bytelm.onnx, iris.onnx, tinychat"),
        "{}",
        out.report()
    );
}

#[test]
fn the_port_comes_from_the_port_variable_when_no_flag_names_it() {
    let mut command = crate::support::process::tinyserve();
    command
        .args(["serve", "--models", "models", "--host", "127.0.0.1"])
        .env("PORT", "not-a-port");
    let out = assert_refuses_to_serve(command, "PORT must be a number");
    assert!(
        out.stderr
            .contains("PORT=\"not-a-port\": expected a port number"),
        "{}",
        out.report()
    );

    let free = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let models = scratch_dir("kserve-port-env");
    std::fs::copy(
        crate::support::repo("models/iris.onnx"),
        models.join("m.onnx"),
    )
    .expect("copy");
    let argv: Vec<String> = ["tinyserve", "serve", "--host=0.0.0.0", "--model-name=iris"]
        .into_iter()
        .map(String::from)
        .chain([format!("--models={}", models.display())])
        .collect();
    let env = BTreeMap::from([("PORT".to_string(), free.to_string())]);
    let server = spawn(&argv, &env, |_| {});
    assert_eq!(server.addr.port(), free, "listening on $PORT");
    assert_eq!(get(&server, "/v2/models/iris/ready").0, 200);
    drop(server);
    let _ = std::fs::remove_dir_all(&models);
}

#[test]
fn kubernetes_variable_expansion_is_kubernetes_own() {
    let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
    assert_eq!(expand("--x=$(A)", &env), "--x=1");
    assert_eq!(expand("$(B)-$$(A)-$", &env), "$(B)-$(A)-$");
    assert_eq!(
        fill_template("--model-name={{.Name}}", "iris"),
        "--model-name=iris"
    );
}

#[test]
fn model_name_serves_a_file_path_or_a_folder_holding_one_decoder_folder() {
    let file = crate::support::serve::ServeChild::builder()
        .models(crate::support::repo("models/iris.onnx"))
        .args(["--model-name", "flower"])
        .start();
    let reply = send(
        &agent(BOUND),
        "GET",
        &file.url("/v2/models/flower/ready"),
        &[],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());

    // storageUri naming the parent of a decoder folder: /mnt/models/tinychat/...
    let parent = scratch_dir("kserve-decoder-parent");
    std::os::unix::fs::symlink(
        crate::support::repo("models/tinychat"),
        parent.join("tinychat"),
    )
    .expect("symlink the decoder folder");
    let decoder = crate::support::serve::ServeChild::builder()
        .models(&parent)
        .args(["--model-name", "chat"])
        .start();
    let reply = send(&agent(BOUND), "GET", &decoder.url("/v1/models"), &[], b"");
    assert_eq!(
        reply.json()["data"][0]["id"],
        json!("chat"),
        "{}",
        reply.text()
    );
    drop(decoder);
    let _ = std::fs::remove_dir_all(&parent);
}

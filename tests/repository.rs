//! The model repository (issue #24): Triton's `NAME/VERSION/model.onnx` layout with versions,
//! `config.pbtxt`'s version policy, the repository extension (index, load, unload) with the
//! official `tritonclient`, explicit control mode, a model that fails to load, statistics, and
//! `--watch` adding and replacing models while requests run. Every server is the real binary
//! on port 0 serving the committed models through ONNX Runtime.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::process::{run, tinyserve, wait_until};
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::serve::{assert_refuses_to_serve, ServeChild};
use crate::support::{agent, repo, scratch_dir, send, Reply};

/// The fixture: `times/{1,2,3}/model.onnx`, version k answering y = x * k.
const TIMES: &str = "models/tests/repository/times";

/// A scratch model folder holding copies of `times` (as `names`) and of the given files.
fn folder(what: &str, times: &[&str], files: &[&str]) -> PathBuf {
    let dir = scratch_dir(what);
    for name in times {
        copy_versions(&dir.join(name), &[1, 2, 3]);
    }
    for file in files {
        let from = repo(file);
        let name = from.file_name().expect("a file name");
        std::fs::copy(&from, dir.join(name)).expect("copy a model");
    }
    dir
}

/// Copies the given versions of the `times` fixture into `to`.
fn copy_versions(to: &Path, versions: &[u64]) {
    for v in versions {
        let dir = to.join(v.to_string());
        std::fs::create_dir_all(&dir).expect("create a version folder");
        std::fs::copy(
            repo(TIMES).join(format!("{v}/model.onnx")),
            dir.join("model.onnx"),
        )
        .expect("copy a version");
    }
}

/// Copies the folder `from` (a decoder or encoder folder) to `to`, subfolders included.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a model folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().expect("a file name");
        if path.is_dir() {
            copy_dir(&path, &to.join(name));
        } else {
            std::fs::copy(&path, to.join(name)).expect("copy a file");
        }
    }
}

/// Moves `staging/name` into the watched `dir` with one rename, waits (at most 30 s) until
/// `servable`, and asserts it was within 5 s of the rename.
fn move_in_servable_within_5_s(
    server: &ServeChild,
    staging: &Path,
    dir: &Path,
    name: &str,
    servable: impl FnMut() -> bool,
) {
    std::fs::rename(staging.join(name), dir.join(name)).expect("move the folder in");
    let moved = Instant::now();
    let served = wait_until(Duration::from_secs(30), servable);
    let took = moved.elapsed();
    assert!(served, "never served; stderr:\n{}", server.stderr());
    assert!(
        took < Duration::from_secs(5),
        "servable after {took:?}, over 5 s"
    );
}

/// `POST /v1/embeddings` of one text with `model`.
fn embed(server: &ServeChild, model: &str) -> Reply {
    let body = json!({"model": model, "input": "a version folder"});
    post(server, "/v1/embeddings", &body)
}

fn post(server: &ServeChild, path: &str, body: &Value) -> Reply {
    let body = body.to_string();
    let headers = [("Content-Type", "application/json")];
    send(
        &agent(Duration::from_secs(60)),
        "POST",
        &server.url(path),
        &headers,
        body.as_bytes(),
    )
}

fn get(server: &ServeChild, path: &str) -> Reply {
    send(
        &agent(Duration::from_secs(60)),
        "GET",
        &server.url(path),
        &[],
        b"",
    )
}

/// `{"inputs": [x]}` for `times` (x FP32 [n]).
fn times_input(x: &[f32]) -> Value {
    json!({"inputs": [{"name": "x", "shape": [x.len()], "datatype": "FP32", "data": x}]})
}

/// The index as `(name, version, state, reason)` rows.
fn index(server: &ServeChild, body: &Value) -> Vec<(String, Option<String>, String, String)> {
    let reply = post(server, "/v2/repository/index", body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = |row: &Value, key: &str| row[key].as_str().map(str::to_string);
    let rows = reply.json();
    rows.as_array()
        .expect("the index is an array")
        .iter()
        .map(|row| {
            (
                text(row, "name").unwrap_or_default(),
                text(row, "version"),
                text(row, "state").unwrap_or_default(),
                text(row, "reason").unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn each_version_answers_with_its_number() {
    let server = ServeChild::builder()
        .models(repo("models/tests/repository"))
        .start();
    let meta = get(&server, "/v2/models/times");
    assert_eq!(meta.status, 200, "{}", meta.text());
    assert_eq!(meta.json()["versions"], json!(["1", "2", "3"]));
    for (path, y, version) in [
        ("/v2/models/times/versions/1/infer", [1.5, -2.0], "1"),
        ("/v2/models/times/versions/2/infer", [3.0, -4.0], "2"),
        ("/v2/models/times/infer", [4.5, -6.0], "3"),
    ] {
        let reply = post(&server, path, &times_input(&[1.5, -2.0]));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["model_version"], version, "{path}: {body}");
        assert_eq!(body["outputs"][0]["data"], json!(y), "{path}: {body}");
    }
    let ready = get(&server, "/v2/models/times/versions/2/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    for version in ["9", "two"] {
        let path = format!("/v2/models/times/versions/{version}/infer");
        let reply = post(&server, &path, &times_input(&[1.0]));
        reply.assert_error(404, "model_not_found", &format!("no version \"{version}\""));
    }
    // The next request still works.
    let reply = post(
        &server,
        "/v2/models/times/versions/3/infer",
        &times_input(&[1.0]),
    );
    assert_eq!(reply.json()["outputs"][0]["data"], json!([3.0]));
}

#[test]
fn config_pbtxt_version_policy_chooses_the_versions() {
    let dir = folder("repo-policy", &["latest", "specific", "all"], &[]);
    let configs = [
        (
            "latest",
            "name: \"latest\"\nversion_policy: { latest: { num_versions: 2 } }\n",
        ),
        (
            "specific",
            "version_policy: { specific: { versions: [1, 3] } } # not 2\n",
        ),
        (
            "all",
            "platform: \"onnxruntime_onnx\"\nversion_policy: { all { } }\n",
        ),
    ];
    for (name, text) in configs {
        std::fs::write(dir.join(name).join("config.pbtxt"), text).expect("write config.pbtxt");
    }
    let server = ServeChild::builder().models(&dir).start();
    for (name, versions) in [
        ("latest", json!(["2", "3"])),
        ("specific", json!(["1", "3"])),
        ("all", json!(["1", "2", "3"])),
    ] {
        let meta = get(&server, &format!("/v2/models/{name}"));
        assert_eq!(meta.json()["versions"], versions, "{name}");
    }
    let reply = post(
        &server,
        "/v2/models/specific/versions/2/infer",
        &times_input(&[1.0]),
    );
    reply.assert_error(404, "model_not_found", "versions: \"1\", \"3\"");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tritonclient_lists_loads_and_unloads_models() {
    let python = python_env();
    let dir = folder(
        "repo-triton",
        &["times"],
        &["models/tests/multi/scale.onnx"],
    );
    let server = ServeChild::builder()
        .models(&dir)
        .args(["--model-control-mode", "explicit", "--load-model", "times"])
        .start();
    let mut command = Command::new(&python);
    command
        .arg(repo("tests/python/repository_check.py"))
        .args(["--url", &server.addr.to_string()]);
    let out = run(command, Duration::from_secs(120));
    let report = format!(
        "{}\n--- server stderr ---\n{}",
        out.report(),
        server.stderr()
    );
    assert_checks_passed(
        &out,
        "repository_check.py",
        &report,
        &[
            "ok    infer times version 2: y = x * 2",
            "ok    load_model(scale): is_model_ready is True",
            "ok    unload_model(times): is_model_ready is False",
            "ok    load_model(times) again: version 2 answers",
        ],
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explicit_mode_serves_only_the_models_asked_for() {
    let dir = folder(
        "repo-explicit",
        &["times"],
        &["models/tests/multi/scale.onnx"],
    );
    let server = ServeChild::builder()
        .models(&dir)
        .args(["--model-control-mode", "explicit", "--load-model", "scale"])
        .start();
    let x = json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    assert_eq!(post(&server, "/v2/models/scale/infer", &x).status, 200);
    let reply = post(&server, "/v2/models/times/infer", &times_input(&[1.0]));
    reply.assert_error(404, "model_not_found", "not loaded (UNAVAILABLE: unloaded)");
    let rows = index(&server, &json!({}));
    assert!(
        rows.contains(&(
            "times".into(),
            None,
            "UNAVAILABLE".into(),
            "unloaded".into()
        )),
        "{rows:?}"
    );
    let ready_rows = index(&server, &json!({"ready": true}));
    assert_eq!(
        ready_rows,
        vec![(
            "scale".into(),
            Some("1".into()),
            "READY".into(),
            String::new()
        )]
    );
    // Every model that should be loaded is: ready.
    assert_eq!(get(&server, "/v2/health/ready").status, 200);
    let loaded = post(&server, "/v2/repository/models/times/load", &json!({}));
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    let reply = post(&server, "/v2/models/times/infer", &times_input(&[1.0]));
    assert_eq!(reply.json()["model_version"], "3");
    let bad = post(
        &server,
        "/v2/repository/models/times/load",
        &json!({"parameters": {"config": "{}"}}),
    );
    bad.assert_error(
        400,
        "invalid_input",
        "load parameter \"config\" is not supported",
    );

    // --load-model without explicit mode is refused at start-up.
    let mut command = tinyserve();
    command
        .args(["serve", "--port", "0", "--load-model", "times", "--models"])
        .arg(&dir);
    let out = assert_refuses_to_serve(command, "--load-model without explicit mode");
    assert!(
        out.stderr.contains("--model-control-mode explicit"),
        "{}",
        out.stderr
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_that_fails_to_load_is_unavailable_and_the_others_serve() {
    let dir = folder(
        "repo-broken",
        &["times"],
        &["models/tests/broken/not_a_model.onnx"],
    );
    let server = ServeChild::builder().models(&dir).start();
    let rows = index(&server, &json!({}));
    let broken = rows
        .iter()
        .find(|row| row.0 == "not_a_model")
        .unwrap_or_else(|| panic!("no row for not_a_model: {rows:?}"));
    assert_eq!(broken.2, "UNAVAILABLE", "{rows:?}");
    assert!(
        broken.3.contains("not_a_model.onnx"),
        "the reason names the file: {rows:?}"
    );
    let reply = post(
        &server,
        "/v2/models/times/versions/2/infer",
        &times_input(&[2.0]),
    );
    assert_eq!(reply.json()["outputs"][0]["data"], json!([4.0]));
    for probe in ["/v2/health/ready", "/readyz"] {
        get(&server, probe).assert_error(503, "not_ready", "not_a_model");
    }
    let reply = post(
        &server,
        "/v2/models/not_a_model/infer",
        &times_input(&[1.0]),
    );
    reply.assert_error(404, "model_not_found", "not loaded (UNAVAILABLE: ");
    // Unloading the broken model: nothing that should be loaded is missing any more.
    assert_eq!(
        post(
            &server,
            "/v2/repository/models/not_a_model/unload",
            &json!({})
        )
        .status,
        200
    );
    assert_eq!(get(&server, "/v2/health/ready").status, 200);
    drop(server);

    let mut command = tinyserve();
    command
        .args(["serve", "--port", "0", "--exit-on-error", "--models"])
        .arg(&dir);
    let out = assert_refuses_to_serve(command, "--exit-on-error served a broken folder");
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_a_model.onnx"),
        "stderr: {}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stats_count_each_version_in_tritons_shape() {
    let server = ServeChild::builder()
        .models(repo("models/tests/repository"))
        .start();
    for _ in 0..3 {
        let reply = post(
            &server,
            "/v2/models/times/versions/2/infer",
            &times_input(&[1.0, 2.0]),
        );
        assert_eq!(reply.status, 200);
    }
    let bad = json!({"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}]});
    assert_eq!(
        post(&server, "/v2/models/times/versions/2/infer", &bad).status,
        400
    );
    let reply = get(&server, "/v2/models/times/versions/2/stats");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let stats = &body["model_stats"][0];
    assert_eq!(stats["name"], "times");
    assert_eq!(stats["version"], "2");
    assert_eq!(stats["inference_count"], 6, "rows: {stats}");
    assert_eq!(stats["execution_count"], 3, "{stats}");
    let phases = &stats["inference_stats"];
    assert_eq!(phases["success"]["count"], 3, "{stats}");
    assert_eq!(phases["fail"]["count"], 1, "{stats}");
    for phase in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert_eq!(phases[phase]["count"], 3, "{phase}: {stats}");
    }
    assert!(phases["compute_infer"]["ns"].as_u64() > Some(0), "{stats}");
    let all = get(&server, "/v2/models/times/stats").json();
    let versions: Vec<&Value> = all["model_stats"]
        .as_array()
        .expect("an array")
        .iter()
        .collect();
    assert_eq!(versions.len(), 3, "{all}");
    assert_eq!(
        versions[0]["inference_stats"]["success"]["count"], 0,
        "version 1 untouched"
    );
    get(&server, "/v2/models/times/versions/7/stats").assert_error(404, "model_not_found", "7");
    get(&server, "/v2/models/nope/stats").assert_error(404, "model_not_found", "nope");
}

#[test]
fn decoder_and_encoder_folders_as_versions_serve_v1_under_the_model_name() {
    let dir = folder("repo-encoder-version", &["times"], &[]);
    copy_dir(&repo("models/tinyembed"), &dir.join("embed").join("1"));
    copy_dir(&repo("models/tinychat"), &dir.join("chat").join("1"));
    copy_dir(&repo("models/tinychat"), &dir.join("chat").join("2"));
    let server = ServeChild::builder().models(&dir).start();
    let reply = embed(&server, "embed");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["model"], "embed", "{body}");
    let vector = body["data"][0]["embedding"].as_array().expect("a vector");
    assert!(!vector.is_empty(), "{body}");
    let rows = index(&server, &json!({}));
    let row = (
        "embed".to_string(),
        Some("1".to_string()),
        "READY".to_string(),
    );
    assert!(
        rows.iter()
            .any(|r| (r.0.clone(), r.1.clone(), r.2.clone()) == row),
        "{rows:?}"
    );
    let models = get(&server, "/v1/models").json();
    assert!(
        models["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == "embed")),
        "{models}"
    );
    // A decoder: the highest version serves chat under the plain name.
    let body = json!({"model": "chat", "max_tokens": 2,
                      "messages": [{"role": "user", "content": "hi"}]});
    let reply = post(&server, "/v1/chat/completions", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["model"], "chat", "{}", reply.text());
    let row = (
        "chat".to_string(),
        Some("2".to_string()),
        "READY".to_string(),
    );
    assert!(
        rows.iter()
            .any(|r| (r.0.clone(), r.1.clone(), r.2.clone()) == row),
        "{rows:?}"
    );
    // The v2 models beside it still serve.
    let reply = post(&server, "/v2/models/times/infer", &times_input(&[1.0]));
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_serves_a_folder_moved_in_within_5_s() {
    let dir = folder("repo-watch-add", &[], &["models/tests/multi/scale.onnx"]);
    let staging = scratch_dir("repo-watch-staging");
    let server = ServeChild::builder().models(&dir).args(["--watch"]).start();
    copy_versions(&staging.join("twice"), &[2]);
    move_in_servable_within_5_s(&server, &staging, &dir, "twice", || {
        post(&server, "/v2/models/twice/infer", &times_input(&[5.0])).status == 200
    });
    let reply = post(&server, "/v2/models/twice/infer", &times_input(&[5.0]));
    assert_eq!(reply.json()["outputs"][0]["data"], json!([10.0]));
    assert_eq!(reply.json()["model_version"], "2");

    // Removed from the folder: no longer served.
    std::fs::remove_dir_all(dir.join("twice")).expect("remove the folder");
    let gone = wait_until(Duration::from_secs(30), || {
        post(&server, "/v2/models/twice/infer", &times_input(&[5.0])).status == 404
    });
    assert!(gone, "still served after removal");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&staging);
}

#[test]
fn watch_serves_an_encoder_folder_moved_in_within_5_s_and_the_api_unloads_and_loads_it() {
    let dir = folder(
        "repo-watch-encoder",
        &[],
        &["models/tests/multi/scale.onnx"],
    );
    let staging = scratch_dir("repo-watch-encoder-staging");
    let server = ServeChild::builder().models(&dir).args(["--watch"]).start();
    let before = embed(&server, "embed");
    assert_eq!(before.status, 404, "{}", before.text());
    copy_dir(&repo("models/tinyembed"), &staging.join("embed"));
    move_in_servable_within_5_s(&server, &staging, &dir, "embed", || {
        embed(&server, "embed").status == 200
    });
    let models = get(&server, "/v1/models").json();
    assert!(
        models["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == "embed")),
        "{models}"
    );

    // The repository extension unloads and loads it like any model.
    let unload = post(&server, "/v2/repository/models/embed/unload", &json!({}));
    assert_eq!(unload.status, 200, "{}", unload.text());
    let gone = embed(&server, "embed");
    assert_eq!(gone.status, 404, "{}", gone.text());
    let load = post(&server, "/v2/repository/models/embed/load", &json!({}));
    assert_eq!(load.status, 200, "{}", load.text());
    let back = embed(&server, "embed");
    assert_eq!(back.status, 200, "{}", back.text());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&staging);
}

#[test]
fn watch_serves_a_decoder_folder_moved_in_and_the_pages_and_openapi_follow_the_models() {
    let dir = folder(
        "repo-watch-decoder",
        &[],
        &["models/tests/multi/scale.onnx"],
    );
    let staging = scratch_dir("repo-watch-decoder-staging");
    let server = ServeChild::builder().models(&dir).args(["--watch"]).start();
    let chat = |server: &ServeChild| {
        let body = json!({"model": "talk", "max_tokens": 3,
                          "messages": [{"role": "user", "content": "Hello"}]});
        post(server, "/v1/chat/completions", &body)
    };
    let listed = |server: &ServeChild, name: &str| {
        let index = get(server, "/").text();
        let openapi = get(server, "/openapi.json").json();
        (
            index.contains(&format!("/models/{name}\"")),
            get(server, &format!("/models/{name}")).status,
            openapi["paths"]
                .as_object()
                .is_some_and(|paths| paths.contains_key(&format!("/models/{name}/predict"))),
        )
    };
    assert_eq!(chat(&server).status, 404);
    assert_eq!(listed(&server, "talk"), (false, 404, false));

    // A decoder folder moved in with one rename: chat within 5 s, and a demo page.
    copy_dir(&repo("models/tinychat"), &staging.join("talk"));
    move_in_servable_within_5_s(&server, &staging, &dir, "talk", || {
        chat(&server).status == 200
    });
    let reply = chat(&server).json();
    assert_eq!(reply["model"], "talk", "{reply}");
    assert_eq!(
        listed(&server, "talk"),
        (true, 200, false),
        "the index links the new chat model and its page is served"
    );

    // A plain model moved in: its predict route appears in the OpenAPI document.
    std::fs::copy(repo("models/iris.onnx"), staging.join("flower.onnx")).expect("copy");
    std::fs::rename(staging.join("flower.onnx"), dir.join("flower.onnx")).expect("move in");
    let served = wait_until(Duration::from_secs(30), || listed(&server, "flower").2);
    assert!(served, "never documented; stderr:\n{}", server.stderr());
    assert_eq!(listed(&server, "flower"), (true, 200, true));

    // Unloaded: gone from the pages and the document too.
    for name in ["talk", "flower"] {
        let unload = post(
            &server,
            &format!("/v2/repository/models/{name}/unload"),
            &json!({}),
        );
        assert_eq!(unload.status, 200, "{}", unload.text());
        assert_eq!(listed(&server, name), (false, 404, false), "{name}");
    }
    assert_eq!(chat(&server).status, 404);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&staging);
}

#[test]
fn watch_does_not_load_a_folder_still_being_copied() {
    let dir = folder("repo-watch-copy", &[], &["models/tests/multi/scale.onnx"]);
    let server = ServeChild::builder().models(&dir).args(["--watch"]).start();
    let bytes = std::fs::read(repo(TIMES).join("3/model.onnx")).expect("read the model");
    let target = dir.join("slow").join("3");
    std::fs::create_dir_all(&target).expect("create the folder");
    // A slow copy: a chunk every 400 ms, so that polls (every second) see it grow.
    let mut file = std::fs::File::create(target.join("model.onnx")).expect("create the file");
    for chunk in bytes.chunks(bytes.len().div_ceil(8)) {
        std::io::Write::write_all(&mut file, chunk).expect("write a chunk");
        std::io::Write::flush(&mut file).expect("flush");
        std::thread::sleep(Duration::from_millis(400));
        for row in index(&server, &json!({})) {
            assert!(
                !(row.0 == "slow" && row.3.contains("cannot load")),
                "the half-copied model was loaded: {row:?}"
            );
        }
    }
    drop(file);
    let served = wait_until(Duration::from_secs(30), || {
        post(&server, "/v2/models/slow/infer", &times_input(&[1.0])).status == 200
    });
    assert!(served, "never served; stderr:\n{}", server.stderr());
    let stderr = server.stderr();
    assert!(
        !stderr.contains("model \"slow\" version 3: cannot load"),
        "{stderr}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Which model answered one of the looping clients' requests.
enum Answered {
    Old,
    New,
    Failed(String),
}

/// Three clients loop on `ask` while `replace` swaps the model under them: none of their
/// requests may fail, and the old and the new model must each answer at least 20 times.
fn replaced_under_load(
    server: &Arc<ServeChild>,
    ask: fn(&ServeChild, f64) -> Answered,
    old_value: f64,
    replace: impl FnOnce(),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (old, new) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (server, stop, failures) = (server.clone(), stop.clone(), failures.clone());
            let (old, new) = (old.clone(), new.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match ask(&server, old_value) {
                        Answered::Old => old.fetch_add(1, Ordering::SeqCst),
                        Answered::New => new.fetch_add(1, Ordering::SeqCst),
                        Answered::Failed(what) => {
                            failures.lock().expect("the list").push(what);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    let answered = wait_until(Duration::from_secs(30), || old.load(Ordering::SeqCst) >= 20);
    assert!(answered, "the clients got no answers");
    replace();
    let replaced = wait_until(Duration::from_secs(60), || new.load(Ordering::SeqCst) >= 20);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a client thread");
    }
    let failures = failures.lock().expect("the list").clone();
    let (old, new) = (old.load(Ordering::SeqCst), new.load(Ordering::SeqCst));
    assert!(
        replaced,
        "the new model never answered ({old} old answers); stderr:\n{}",
        server.stderr()
    );
    assert_eq!(
        failures.len(),
        0,
        "failed requests during the swap: {failures:?}"
    );
    assert!(old >= 20 && new >= 20, "answers: {old} old, {new} new");
}

#[test]
fn watch_replaces_a_model_under_load_without_a_failed_request() {
    let dir = scratch_dir("repo-watch-replace");
    copy_versions(&dir.join("times"), &[1]);
    let server = Arc::new(ServeChild::builder().models(&dir).args(["--watch"]).start());
    // Version 1 answers y = x, its replacement (version 2's file) y = 2x.
    let ask = |server: &ServeChild, old: f64| {
        let reply = post(server, "/v2/models/times/infer", &times_input(&[1.0]));
        let y = (reply.status == 200).then(|| reply.json()["outputs"][0]["data"][0].as_f64());
        match y.flatten() {
            Some(y) if (y - old).abs() < 1e-6 => Answered::Old,
            Some(y) if (y - 2.0).abs() < 1e-6 => Answered::New,
            _ => Answered::Failed(format!("{} {}", reply.status, reply.text())),
        }
    };
    replaced_under_load(&server, ask, 1.0, || {
        // The new model is written beside the folder and renamed over the old file in one step.
        let next = dir.join(".times-next.onnx");
        std::fs::copy(repo(TIMES).join("2/model.onnx"), &next).expect("write the new model");
        std::fs::rename(&next, dir.join("times/1/model.onnx")).expect("replace the model");
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_replaces_an_encoder_under_load_without_a_failed_request() {
    let dir = scratch_dir("repo-watch-replace-encoder");
    copy_dir(&repo("models/tinyembed"), &dir.join("embed"));
    let server = Arc::new(ServeChild::builder().models(&dir).args(["--watch"]).start());
    let before = embed(&server, "embed");
    assert_eq!(before.status, 200, "{}", before.text());
    let old_value = before.json()["data"][0]["embedding"][0]
        .as_f64()
        .expect("an embedding");
    let ask = |server: &ServeChild, old: f64| {
        let reply = embed(server, "embed");
        let value = (reply.status == 200)
            .then(|| reply.json()["data"][0]["embedding"][0].as_f64())
            .flatten();
        match value {
            Some(v) if (v - old).abs() < 1e-6 => Answered::Old,
            Some(_) => Answered::New,
            None => Answered::Failed(format!("{} {}", reply.status, reply.text())),
        }
    };
    replaced_under_load(&server, ask, old_value, || {
        // CLS pooling instead of mean: written beside, renamed over in one step.
        let pooling = dir.join("embed/1_Pooling");
        let config =
            std::fs::read_to_string(pooling.join("config.json")).expect("read the pooling");
        let cls = config
            .replace(
                "\"pooling_mode_cls_token\": false",
                "\"pooling_mode_cls_token\": true",
            )
            .replace(
                "\"pooling_mode_mean_tokens\": true",
                "\"pooling_mode_mean_tokens\": false",
            );
        assert_ne!(cls, config, "the pooling config changed shape");
        std::fs::write(pooling.join(".config.json.next"), cls).expect("write the new pooling");
        std::fs::rename(
            pooling.join(".config.json.next"),
            pooling.join("config.json"),
        )
        .expect("replace the pooling");
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

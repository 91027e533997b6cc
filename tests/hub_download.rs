//! Downloading through `hf-hub`, against a local stand-in for the Hugging Face hub (no test
//! reaches the network): what is not cached is fetched into the cache in its real layout, then
//! found there offline; a repository this program cannot run is refused before its weights are
//! fetched.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use support::fixtures::{self, Spec};

const REPO: &str = "test-org/tiny-sd";
const COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// Serves a folder the way the hub serves a repository's `main` revision; records the paths
/// asked for.
fn serve(repo_dir: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::Builder::new()
        .name("fake hub".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, &repo_dir, &log);
            }
        })
        .expect("server thread");
    (endpoint, requests)
}

fn files_of(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            files_of(&entry.path(), &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

fn answer(mut stream: TcpStream, repo_dir: &Path, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request = String::new();
    reader.read_line(&mut request).expect("request line");
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
            range = a.parse().ok().map(|a| (a, b.parse().ok()));
        }
    }
    log.lock().expect("log").push(path.clone());

    let info = format!("/api/models/{REPO}/revision/main");
    let resolve = format!("/{REPO}/resolve/main/");
    let (status, headers, body) = if path == info {
        let mut files = Vec::new();
        files_of(repo_dir, "", &mut files);
        let siblings: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({"rfilename": f}))
            .collect();
        let body = serde_json::json!({"sha": COMMIT, "siblings": siblings}).to_string();
        ("200 OK", String::new(), body.into_bytes())
    } else if let Some(file) = path.strip_prefix(&resolve) {
        match std::fs::read(repo_dir.join(file)) {
            Ok(bytes) => {
                // hf-hub probes with `bytes=0-0`, then fetches `bytes=N-`.
                let (start, last) = range.unwrap_or((0, None));
                let start = start.min(bytes.len());
                let end = last.map_or(bytes.len(), |l| (l + 1).min(bytes.len()));
                let etag = blake3::hash(&bytes).to_hex().to_string();
                let headers = format!(
                    "ETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Range: bytes {start}-{}/{}\r\n",
                    end.max(1) - 1,
                    bytes.len()
                );
                (
                    "206 Partial Content",
                    headers,
                    bytes[start..end.min(bytes.len())].to_vec(),
                )
            }
            Err(_) => ("404 Not Found", String::new(), Vec::new()),
        }
    } else {
        ("404 Not Found", String::new(), Vec::new())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = reader.read(&mut [0; 1]);
}

fn interconcept(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_interconcept"));
    command
        .env("RUST_LOG", "error")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN");
    command.envs(env.iter().copied());
    command.args(args).output().expect("the program starts")
}

#[test]
fn an_uncached_model_is_downloaded_into_the_cache_then_found_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = fixtures::write_diffusers(&dir.path().join("repo"), &Spec::sd15());
    let (endpoint, requests) = serve(repo);
    let home = dir.path().join("hf");
    let home = home.to_str().expect("UTF-8");
    let out = dir.path().join("x.png");
    let out = out.to_str().expect("UTF-8");
    let args = [
        "--model", REPO, "generate", "--width", "64", "--height", "64", "--steps", "1", "--out",
        out,
    ];

    let output = interconcept(&args, &[("HF_HOME", home), ("HF_ENDPOINT", &endpoint)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cached = Path::new(home).join("hub/models--test-org--tiny-sd");
    assert_eq!(
        std::fs::read_to_string(cached.join("refs/main"))
            .expect("ref")
            .trim(),
        COMMIT
    );
    let snapshot = cached.join("snapshots").join(COMMIT);
    assert!(
        snapshot
            .join("unet/diffusion_pytorch_model.safetensors")
            .is_file()
    );
    assert!(
        !snapshot.join("feature_extractor").exists(),
        "only what the program needs"
    );
    let fetched = requests.lock().expect("log").len();

    let output = interconcept(&args, &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        requests.lock().expect("log").len(),
        fetched,
        "the second run went online"
    );
}

#[test]
fn sdxl_is_refused_before_its_weights_are_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = fixtures::write_diffusers(&dir.path().join("repo"), &Spec::sd15());
    let index = repo.join("model_index.json");
    let text = std::fs::read_to_string(&index).expect("read");
    std::fs::write(
        &index,
        text.replace("StableDiffusionPipeline", "StableDiffusionXLPipeline"),
    )
    .expect("write");
    let (endpoint, requests) = serve(repo);
    let home = dir.path().join("hf");
    let out = dir.path().join("x.png");
    let output = interconcept(
        &[
            "--model",
            REPO,
            "generate",
            "--out",
            out.to_str().expect("UTF-8"),
        ],
        &[
            ("HF_HOME", home.to_str().expect("UTF-8")),
            ("HF_ENDPOINT", &endpoint),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("SDXL") && stderr.contains("not supported"),
        "{stderr}"
    );
    let log = requests.lock().expect("log");
    assert!(
        !log.iter().any(|p| p.ends_with(".safetensors")),
        "weights fetched: {log:?}"
    );
}

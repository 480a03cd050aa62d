//! The documentation checked against the repository: the README's hello world (and any block
//! marked `<!-- examples/NAME.rs -->`) is that file byte for byte, every relative link in
//! README.md and `docs/*.md` reaches a file (and a heading, for `#anchors` into Markdown), and
//! every page is one of the doc-test pages of `src/doctests.rs`, whose Rust blocks
//! `cargo test --doc` compiles.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// README.md and every `docs/*.md`, as paths relative to the repository.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// A fenced code block: the info string (`rust,no_run`), its text with a final newline per
/// line, and the last non-blank line before its opening fence.
#[derive(Debug, PartialEq)]
struct Block {
    info: String,
    text: String,
    before: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut before = "";
    let mut open: Option<Block> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        match open.take() {
            Some(block) if fence => blocks.push(block),
            Some(mut block) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
            None if fence => {
                open = Some(Block {
                    info: line.trim_start().trim_start_matches('`').trim().to_string(),
                    text: String::new(),
                    before: before.trim().to_string(),
                });
            }
            None if !line.trim().is_empty() => before = line,
            None => {}
        }
    }
    blocks
}

/// The text outside fenced blocks, with inline code spans blanked (links there are examples).
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            }
            out.push(if in_code { ' ' } else { c });
        }
        out.push('\n');
    }
    out
}

/// The targets of the Markdown links and images `[text](target)` in `markdown`'s prose.
fn links(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            found.push(target.to_string());
            rest = &rest[end..];
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces made hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a page's headings make (a repeated heading gets `-1`, `-2`...).
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

#[test]
fn the_helpers_find_blocks_links_and_anchors() {
    let page = "# Top\n\n<!-- examples/x.rs -->\n```rust,no_run\nfn main() {}\n```\n\n\
                See [a](docs/a.md#top), `[not](a link)` and ![img](b.png).\n\
                ```text\n[nor](this)\n```\n## Top\n### A `code` title: yes!\n";
    let found = blocks(page);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].info, "rust,no_run");
    assert_eq!(found[0].text, "fn main() {}\n");
    assert_eq!(found[0].before, "<!-- examples/x.rs -->");
    assert_eq!(links(page), ["docs/a.md#top", "b.png"]);
    let anchors = anchors(page);
    for anchor in ["top", "top-1", "a-code-title-yes"] {
        assert!(anchors.contains(anchor), "{anchor} in {anchors:?}");
    }
    assert_eq!(
        slug("Fan-out: 3 parallel GETs against FastAPI + aiohttp"),
        "fan-out-3-parallel-gets-against-fastapi--aiohttp"
    );
}

#[test]
fn readme_hello_world_is_examples_hello_byte_for_byte() {
    let readme = read(&root().join("README.md"));
    let after = readme
        .split_once("\n## Hello world\n")
        .map(|(_, after)| after)
        .expect("README.md has a `## Hello world` section");
    let block = blocks(after)
        .into_iter()
        .next()
        .expect("a code block under `## Hello world`");
    assert!(block.info.starts_with("rust"), "{:?}", block.info);
    assert_eq!(
        block.text,
        read(&root().join("examples/hello.rs")),
        "README's hello world and examples/hello.rs differ"
    );
}

#[test]
fn blocks_that_name_an_example_are_that_file_byte_for_byte() {
    let mut checked = 0;
    for page in pages() {
        for block in blocks(&read(&root().join(&page))) {
            let Some(file) = block
                .before
                .strip_prefix("<!--")
                .and_then(|rest| rest.strip_suffix("-->"))
                .map(str::trim)
                .filter(|file| file.starts_with("examples/"))
            else {
                continue;
            };
            assert_eq!(
                block.text,
                read(&root().join(file)),
                "{page}: the block marked {file} differs from that file"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "the README's hello world is marked <!-- examples/hello.rs -->"
    );
}

#[test]
fn every_relative_link_reaches_a_file_and_heading() {
    let mut broken = Vec::new();
    for page in pages() {
        let dir = Path::new(&page)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for link in links(&read(&root().join(&page))) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                root().join(&page)
            } else {
                root().join(&dir).join(file)
            };
            if !target.exists() {
                broken.push(format!("{page}: {link} (no file {})", target.display()));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| file.is_empty() || file.ends_with(".md")) {
                if !anchors(&read(&target)).contains(anchor) {
                    broken.push(format!("{page}: {link} (no heading #{anchor})"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_a_doc_test_page_and_every_block_names_its_language() {
    let doctests = read(&root().join("src/doctests.rs"));
    for page in pages() {
        assert!(
            doctests.contains(&format!("include_str!(\"../{page}\")")),
            "src/doctests.rs does not include {page}, so its Rust blocks are not compiled"
        );
        for block in blocks(&read(&root().join(&page))) {
            assert!(
                !block.info.is_empty(),
                "{page}: a block without a language would be compiled as Rust:\n{}",
                block.text
            );
        }
    }
}

#[test]
fn ci_runs_the_readmes_test_command() {
    let readme = read(&root().join("README.md"));
    let tests = readme
        .split_once("\n## Tests\n")
        .map(|(_, after)| after)
        .expect("README.md has a `## Tests` section");
    let commands: Vec<String> = blocks(tests)
        .into_iter()
        .next()
        .expect("a command block under `## Tests`")
        .text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
        .collect();
    assert!(commands.iter().any(|c| c == "bash .ci/run"), "{commands:?}");
    assert!(commands.iter().any(|c| c == "cargo test"), "{commands:?}");
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.lines().any(|line| line.trim() == "cargo test"),
        ".ci/run no longer runs the README's test command `cargo test`"
    );
}

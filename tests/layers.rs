//! The workspace's structural rules (issue 12), checked on the source tree
//! so that a change which breaks one fails here with a short, clear list:
//!
//! - no cycle among the application's top-level modules (`src/<m>/` or
//!   `src/<m>.rs`; a reference is `crate::<m>` or `use crate::{.., <m>, ..}`
//!   in another module's code, tests excluded);
//! - no source file over 900 lines under `src/` and `crates/*/src`, not
//!   counting `#[cfg(test)]` items;
//! - no function over 150 lines outside tests;
//! - no `Result<_, String>` in library code (all but `src/main.rs` and
//!   `src/cli/`);
//! - `fedge-sip` and `fedge-media` do not depend on `fedge`, and
//!   `fedge-media` not on `fedge-sip`.
//!
//! It reads text only (std, no parser crate): comments, strings and
//! character literals are blanked before any rule looks at the code. It
//! never changes a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 900;
const MAX_FN_LINES: usize = 150;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One source file: its path from the repository root, its text with
/// comments, strings and char literals blanked (same byte offsets, same
/// lines), and the byte ranges of its `#[cfg(test)]` items.
struct Source {
    rel: String,
    code: String,
    tests: Vec<(usize, usize)>,
}

impl Source {
    fn line(&self, at: usize) -> usize {
        self.code.as_bytes()[..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn in_tests(&self, at: usize) -> bool {
        self.tests.iter().any(|(a, b)| (*a..=*b).contains(&at))
    }

    /// Lines of the file outside its `#[cfg(test)]` items.
    fn lines_without_tests(&self) -> usize {
        let total = self.code.lines().count();
        let tests: usize = self
            .tests
            .iter()
            .map(|(a, b)| self.line(*b) - self.line(*a) + 1)
            .sum();
        total.saturating_sub(tests)
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Blanks comments, string literals (plain, byte, raw) and char literals
/// with spaces, keeping newlines, so offsets and line numbers hold.
fn blank(text: &str) -> String {
    let s = text.as_bytes();
    let mut out = s.to_vec();
    let n = s.len();
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to.min(n)] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < n {
        let c = s[i];
        let prev = if i > 0 { s[i - 1] } else { b' ' };
        if c == b'/' && s.get(i + 1) == Some(&b'/') {
            let end = s[i..].iter().position(|b| *b == b'\n').map_or(n, |p| i + p);
            wipe(&mut out, i, end);
            i = end;
        } else if c == b'/' && s.get(i + 1) == Some(&b'*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                if s[j] == b'/' && s.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if s[j] == b'*' && s.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            wipe(&mut out, i, j);
            i = j;
        } else if c == b'r'
            && (!is_ident(prev)
                || ((prev == b'b' || prev == b'c') && i >= 2 && !is_ident(s[i - 2])))
            && matches!(s.get(i + 1), Some(b'"') | Some(b'#'))
        {
            let hashes = s[i + 1..].iter().take_while(|b| **b == b'#').count();
            if s.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = s[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(n, |p| body + p + close.len());
            wipe(&mut out, i + 1, end);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < n && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            wipe(&mut out, i, j + 1);
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é'), not a lifetime.
            let end = if s.get(i + 1) == Some(&b'\\') {
                s.get(i + 3..)
                    .and_then(|r| r.iter().position(|b| *b == b'\''))
                    .map(|p| i + 3 + p)
            } else {
                let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (s.get(i + 1 + width) == Some(&b'\'')).then_some(i + 1 + width)
            };
            match end {
                Some(e) => {
                    wipe(&mut out, i, e + 1);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

/// The offset of the `}` matching the `{` at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    code.len().saturating_sub(1)
}

/// From `from`, the first `{` or `;` outside parentheses and brackets.
fn body_or_semicolon(code: &[u8], from: usize) -> Option<(usize, u8)> {
    let mut depth = 0i32;
    for (k, b) in code.iter().enumerate().skip(from) {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' | b';' if depth == 0 => return Some((k, *b)),
            _ => {}
        }
    }
    None
}

/// Where the item after an attribute ending at `from` ends.
fn item_end(code: &[u8], mut from: usize) -> usize {
    loop {
        while from < code.len() && code[from].is_ascii_whitespace() {
            from += 1;
        }
        if code[from..].starts_with(b"#[") {
            let mut depth = 0;
            while from < code.len() {
                match code[from] {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                from += 1;
            }
            from += 1;
        } else {
            break;
        }
    }
    match body_or_semicolon(code, from) {
        Some((k, b'{')) => matching_brace(code, k),
        Some((k, _)) => k,
        None => code.len().saturating_sub(1),
    }
}

/// Every offset where `needle` starts with no identifier character before it.
fn find_words<'a>(code: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(needle)
        .map(|(at, _)| at)
        .filter(move |at| *at == 0 || !is_ident(code.as_bytes()[at - 1]))
}

/// The `#[cfg(test)]` items of a file, and the files they declare
/// (`#[cfg(test)] mod name;`).
fn test_items(code: &str, file: &Path) -> (Vec<(usize, usize)>, Vec<PathBuf>) {
    let b = code.as_bytes();
    let mut items = Vec::new();
    let mut files = Vec::new();
    for at in code.match_indices("#[cfg(test)]").map(|(at, _)| at) {
        let end = item_end(b, at + "#[cfg(test)]".len());
        items.push((at, end));
        let item = code[at + "#[cfg(test)]".len()..=end.min(b.len() - 1)].trim();
        let item = item
            .trim_start_matches("pub(crate)")
            .trim_start_matches("pub")
            .trim();
        if let Some(name) = item.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            let name = name.trim();
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let dir = file.parent().unwrap_or(Path::new(""));
            let dir = if matches!(stem, "mod" | "lib" | "main") {
                dir.to_path_buf()
            } else {
                dir.join(stem)
            };
            files.push(dir.join(format!("{name}.rs")));
            files.push(dir.join(name).join("mod.rs"));
        }
    }
    (items, files)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The non-test source files of `src/` and `crates/*/src`.
fn sources() -> Vec<Source> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        let mut crates: Vec<PathBuf> = crates.flatten().map(|e| e.path()).collect();
        crates.sort();
        for c in crates {
            rust_files(&c.join("src"), &mut files);
        }
    }
    let mut parsed = Vec::new();
    let mut test_files = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let code = blank(&text);
        let (tests, declared) = test_items(&code, &f);
        test_files.extend(declared);
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        parsed.push((f, Source { rel, code, tests }));
    }
    parsed
        .into_iter()
        .filter(|(f, _)| !test_files.contains(f))
        .map(|(_, s)| s)
        .collect()
}

/// The application's top-level module a file belongs to (`None` for the
/// crate roots and the workspace crates).
fn module_of(rel: &str) -> Option<String> {
    let rest = rel.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level module names a path after `prefix` (`crate::`) refers to:
/// one identifier, or each entry of a `{..}` group.
fn referenced(code: &str, after: usize) -> Vec<String> {
    let rest = code[after..].trim_start();
    let ident = |s: &str| -> String {
        s.bytes()
            .take_while(|b| is_ident(*b))
            .map(char::from)
            .collect()
    };
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (k, b) in group.bytes().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' if depth == 0 => {
                    names.push(ident(group[start..k].trim_start()));
                    break;
                }
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    names.push(ident(group[start..k].trim_start()));
                    start = k + 1;
                }
                _ => {}
            }
        }
        names
    } else {
        vec![ident(rest)]
    }
}

#[test]
fn no_module_cycle() {
    let srcs = sources();
    let modules: BTreeSet<String> = srcs.iter().filter_map(|s| module_of(&s.rel)).collect();
    // module -> (referenced module -> first place it is referenced)
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &srcs {
        let Some(from) = module_of(&s.rel) else {
            continue;
        };
        graph.entry(from.clone()).or_default();
        // The CLI lives in the binary: it reaches the library as `fedge::`.
        let prefixes: &[&str] = if from == "cli" {
            &["crate::", "fedge::"]
        } else {
            &["crate::"]
        };
        for prefix in prefixes {
            for at in find_words(&s.code, prefix) {
                if s.in_tests(at) {
                    continue;
                }
                for to in referenced(&s.code, at + prefix.len()) {
                    if to != from && modules.contains(&to) {
                        graph
                            .entry(from.clone())
                            .or_default()
                            .entry(to)
                            .or_insert_with(|| format!("{}:{}", s.rel, s.line(at)));
                    }
                }
            }
        }
    }
    let cycles = strongly_connected(&graph);
    if cycles.is_empty() {
        return;
    }
    let mut msg = String::from(
        "module import cycles in src/ (no module may import one that imports it back):\n",
    );
    for scc in &cycles {
        msg.push_str(&format!(
            "  cycle among {}:\n",
            scc.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        for from in scc {
            for (to, at) in &graph[from] {
                if scc.contains(to) {
                    msg.push_str(&format!("    {from} -> {to}  ({at})\n"));
                }
            }
        }
    }
    msg.push_str("import graph (module -> modules it references):\n");
    for (from, tos) in &graph {
        let tos: Vec<&str> = tos.keys().map(String::as_str).collect();
        let tos = if tos.is_empty() {
            "(none)".to_string()
        } else {
            tos.join(", ")
        };
        msg.push_str(&format!("  {from} -> {tos}\n"));
    }
    panic!("{msg}");
}

/// The graph's strongly connected components of more than one module
/// (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<BTreeSet<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.insert(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn no_long_files() {
    let mut long: Vec<(usize, String)> = sources()
        .iter()
        .map(|s| (s.lines_without_tests(), s.rel.clone()))
        .filter(|(n, _)| *n > MAX_FILE_LINES)
        .collect();
    long.sort_by(|a, b| b.cmp(a));
    assert!(
        long.is_empty(),
        "source files over {MAX_FILE_LINES} lines (not counting #[cfg(test)] items):\n{}",
        long.iter()
            .map(|(n, f)| format!("  {f}: {n} lines"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn no_long_functions() {
    let mut long = Vec::new();
    for s in sources() {
        let b = s.code.as_bytes();
        for at in find_words(&s.code, "fn ") {
            if s.in_tests(at) {
                continue;
            }
            let name: String = s.code[at + 3..]
                .trim_start()
                .bytes()
                .take_while(|c| is_ident(*c))
                .map(char::from)
                .collect();
            if name.is_empty() {
                continue; // a `fn(..)` pointer type
            }
            if let Some((open, b'{')) = body_or_semicolon(b, at + 3) {
                let lines = s.line(matching_brace(b, open)) - s.line(at) + 1;
                if lines > MAX_FN_LINES {
                    long.push((lines, format!("{}:{} {name}", s.rel, s.line(at))));
                }
            }
        }
    }
    long.sort_by(|a, b| b.cmp(a));
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (outside tests):\n{}",
        long.iter()
            .map(|(n, f)| format!("  {f}: {n} lines"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The top-level generic arguments of the `<..>` opening at `open`.
fn generic_args(code: &str, open: usize) -> Vec<String> {
    let b = code.as_bytes();
    let (mut depth, mut start, mut args) = (0i32, open + 1, Vec::new());
    for k in open..b.len() {
        match b[k] {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if k > 0 && b[k - 1] == b'-' => {} // `->` in a Fn type
            b'>' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    args.push(code[start..k].to_string());
                    return args;
                }
            }
            b',' if depth == 1 => {
                args.push(code[start..k].to_string());
                start = k + 1;
            }
            b';' | b'{' => break,
            _ => {}
        }
    }
    args
}

fn is_library(rel: &str) -> bool {
    rel.starts_with("crates/") || (rel != "src/main.rs" && !rel.starts_with("src/cli/"))
}

#[test]
fn no_string_errors() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| is_library(&s.rel)) {
        for at in find_words(&s.code, "Result") {
            let after = at + "Result".len();
            let rest = &s.code[after..];
            let open = after + (rest.len() - rest.trim_start().len());
            if s.in_tests(at) || s.code.as_bytes().get(open) != Some(&b'<') {
                continue;
            }
            let args = generic_args(&s.code, open);
            let err = args
                .last()
                .map(|e| e.split_whitespace().collect::<String>())
                .unwrap_or_default();
            if args.len() == 2 && matches!(err.as_str(), "String" | "std::string::String") {
                let ty: String = args
                    .iter()
                    .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(", ");
                found.push(format!("  {}:{} Result<{ty}>", s.rel, s.line(at)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in library code (use a typed error, thiserror):\n{}",
        found.join("\n")
    );
}

/// The packages a Cargo.toml depends on (any dependency table), with the
/// line that names each.
fn dependencies(manifest: &str) -> Vec<(String, usize)> {
    let mut deps = Vec::new();
    let mut table = String::new();
    for (n, line) in manifest.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(h) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = h.trim().to_string();
            // [dependencies.name] form
            if let Some((t, name)) = table.rsplit_once('.')
                && t.ends_with("dependencies")
            {
                deps.push((name.trim_matches('"').to_string(), n + 1));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let package = |v: &str| {
            v.split("package")
                .nth(1)
                .and_then(|p| p.split('"').nth(1))
                .map(str::to_string)
        };
        if table.ends_with("dependencies") {
            deps.push((package(value).unwrap_or_else(|| key.to_string()), n + 1));
        } else if key == "package"
            && table
                .rsplit_once('.')
                .is_some_and(|(t, _)| t.ends_with("dependencies"))
        {
            deps.push((value.trim().trim_matches('"').to_string(), n + 1));
        }
    }
    deps
}

#[test]
fn crate_dependencies() {
    let mut problems = Vec::new();
    for (krate, forbidden) in [
        ("fedge-sip", &["fedge"][..]),
        ("fedge-media", &["fedge", "fedge-sip"][..]),
    ] {
        let path = root().join("crates").join(krate).join("Cargo.toml");
        let Ok(manifest) = std::fs::read_to_string(&path) else {
            problems.push(format!(
                "  crates/{krate}/Cargo.toml is missing: {krate} is not a workspace crate yet"
            ));
            continue;
        };
        for (dep, line) in dependencies(&manifest) {
            if forbidden.contains(&dep.as_str()) {
                problems.push(format!(
                    "  crates/{krate}/Cargo.toml:{line} depends on {dep}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "workspace crates must not depend on the application (fedge), nor fedge-media on fedge-sip:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // Blanking keeps offsets, hides strings and comments, not lifetimes.
    let text = "fn a<'x>(s: &'x str) -> char { let _ = \"crate::b {\"; '\\''; '{' } // crate::c\n";
    let code = blank(text);
    assert_eq!(code.len(), text.len());
    assert!(code.contains("fn a<'x>(s: &'x str)"));
    assert!(!code.contains("crate::"));
    assert_eq!(code.matches('{').count(), 1);
    let raw = blank("let r = r#\"a \"quoted\" { \"#; let b = br\"}\"; x");
    assert_eq!(raw.matches(['{', '}']).count(), 0);
    assert!(raw.ends_with(" x"));
    // Groups and plain paths.
    assert_eq!(
        referenced("crate::{admin::State, store, sip::{a, b}};", 7),
        ["admin", "store", "sip"]
    );
    assert_eq!(referenced("crate::config::Config", 7), ["config"]);
    // Generic arguments around a Fn type and a tuple.
    let ty = "Result<Box<dyn Fn(u8) -> u8>, (String, u8)>";
    assert_eq!(generic_args(ty, 6).len(), 2);
    assert_eq!(
        generic_args("Result<Vec<u8>, String>", 6)[1].trim(),
        "String"
    );
    // A #[cfg(test)] item, block or declaration.
    let code = "fn f() {}\n#[cfg(test)]\nmod tests {\n fn g() {}\n}\n#[cfg(test)]\nmod more;\n";
    let (items, files) = test_items(code, Path::new("src/x.rs"));
    assert_eq!(items.len(), 2);
    assert_eq!(files[0], Path::new("src/x/more.rs"));
    // Dependency tables in their three spellings.
    let deps = dependencies(
        "[dependencies]\nbytes = \"1\"\nsip = { package = \"fedge-sip\", path = \"..\" }\n\
         [dev-dependencies.fedge]\npath = \"../..\"\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n",
    );
    let names: Vec<&str> = deps.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(names, ["bytes", "fedge-sip", "fedge", "libc"]);
}

//! The layout of `src/` keeps its promises: the stage folders (and the top-level modules) import
//! each other without a cycle, and the kernels import nothing of the engine but its error type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;

/// Each room of `src/` (a folder, or a file at the top) and the rooms its code (tests left out)
/// names through `crate::`.
fn rooms() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = common::repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let pattern = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let room = first.to_string_lossy().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let names = rooms.entry(room.clone()).or_default();
        for m in pattern.captures_iter(code) {
            if m[1] != room {
                names.insert(m[1].to_string());
            }
        }
    }
    rooms
}

#[test]
fn the_stage_folders_import_each_other_without_a_cycle() {
    let rooms = rooms();
    assert!(rooms.len() >= 10, "{rooms:?}");
    // Depth-first, keeping the path: a room met again on its own path closes a cycle.
    fn visit(
        room: &str,
        rooms: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|r| r == room) {
            panic!("import cycle: {} -> {room}", path[at..].join(" -> "));
        }
        if done.contains(room) {
            return;
        }
        path.push(room.to_string());
        for next in rooms.get(room).into_iter().flatten() {
            visit(next, rooms, path, done);
        }
        path.pop();
        done.insert(room.to_string());
    }
    let mut done = BTreeSet::new();
    for room in rooms.keys() {
        visit(room, &rooms, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_kernels_stand_on_the_error_type_alone() {
    let rooms = rooms();
    let kernels = &rooms["kernels"];
    assert!(
        kernels.iter().all(|r| r == "error"),
        "the kernels import {kernels:?}"
    );
}

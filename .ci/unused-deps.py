#!/usr/bin/env python3
"""Fails when a workspace crate declares a dependency that none of its targets uses.

rustc's `unused_crate_dependencies` lint reports, per compiled target, every `--extern` crate
the target does not use. Alone it is too noisy to deny: each integration test, bench, example
and binary is its own crate and uses only some of the package's dependencies. This script
turns it into a per-package answer:

* a normal dependency is unused when every library and binary target of the package reports
  it (a dependency that only tests use belongs in [dev-dependencies]);
* a dev-dependency is unused when every target compiled with dev-dependencies (tests,
  benches, examples, and the library and binaries built as unit tests) reports it, and no
  doc comment of the package names it (doctests are not compiled by `cargo check`).

Dependencies that apply only under a `[target.'cfg(..)']` table and build-dependencies are
not judged. Runs `cargo check --workspace --all-targets --all-features` with the lint on for
the workspace's crates alone (`.ci/warn-unused-deps` as `RUSTC_WORKSPACE_WRAPPER`): their
dependencies are the ones the clippy step checked, in the same target directory, and are not
checked again; the workspace crates' own results are kept apart by the wrapper.
"""

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / ".ci" / "warn-unused-deps"
LINT = "unused_crate_dependencies"
MESSAGE = re.compile(r"extern crate `([^`]+)` is unused in crate `([^`]+)`")
LIB_KINDS = {"lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro", "bin"}
DEV_KINDS = {"test", "bench", "example"}


def metadata():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def flagged_per_target():
    """(package id, target kind, target name) -> extern crate names reported unused."""
    env = dict(os.environ)
    env["RUSTC_WORKSPACE_WRAPPER"] = str(WRAPPER)
    proc = subprocess.run(
        [
            "cargo",
            "check",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--message-format=json",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit("unused-deps: cargo check failed")
    flagged = defaultdict(set)
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-message":
            continue
        code = (msg["message"].get("code") or {}).get("code")
        if code != LINT:
            continue
        found = MESSAGE.search(msg["message"]["message"])
        if not found:
            continue
        target = msg["target"]
        for kind in target["kind"]:
            flagged[(msg["package_id"], kind, target["name"])].add(found.group(1))
    return flagged


def named_in_doc_comments(package_dir, crate):
    pattern = re.compile(r"^\s*//[/!].*\b" + re.escape(crate) + r"\b")
    for path in Path(package_dir).rglob("*.rs"):
        if "target" in path.parts:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            if any(pattern.search(line) for line in f):
                return True
    return False


def main():
    meta = metadata()
    flagged = flagged_per_target()
    members = set(meta["workspace_members"])
    packages = {p["id"]: p for p in meta["packages"] if p["id"] in members}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"] if n["id"] in members}
    problems = []
    for pid, package in sorted(packages.items(), key=lambda kv: kv[1]["name"]):
        normal, dev = set(), set()
        for dep in nodes[pid]["deps"]:
            kinds = dep["dep_kinds"]
            # Only dependencies that apply on every platform and configuration are judged.
            if any(k["target"] for k in kinds):
                continue
            if any(k["kind"] is None for k in kinds):
                normal.add(dep["name"])
            elif any(k["kind"] == "dev" for k in kinds):
                dev.add(dep["name"])
        lib_targets, dev_targets = [], []
        for target in package["targets"]:
            for kind in target["kind"]:
                key = (pid, kind, target["name"])
                if kind in LIB_KINDS:
                    lib_targets.append(key)
                    if target.get("test", True):
                        dev_targets.append(key)
                elif kind in DEV_KINDS:
                    dev_targets.append(key)
        package_dir = Path(package["manifest_path"]).parent
        if lib_targets:
            for crate in sorted(normal):
                if all(crate in flagged[key] for key in lib_targets):
                    problems.append(
                        f"{package['name']}: dependency `{crate}` is used by no library or "
                        "binary target: remove it (or move it to [dev-dependencies] if only "
                        "tests use it)"
                    )
        if dev_targets:
            for crate in sorted(dev):
                if all(crate in flagged[key] for key in dev_targets) and not named_in_doc_comments(
                    package_dir, crate
                ):
                    problems.append(
                        f"{package['name']}: dev-dependency `{crate}` is used by no test, bench, "
                        "example or doctest: remove it"
                    )
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"unused-deps: every dependency of {len(packages)} crates is used")


if __name__ == "__main__":
    main()
